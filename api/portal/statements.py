"""/portal/statements: the shop's settlement statements, one with its lines, and
its CSV (the same stream as `GET /partner/v1/statements/{id}/csv`).

Cashiers and managers both read them: a statement is the shop's own figures,
the same sums the transactions page (open to both) already shows sale by sale,
and nothing here writes. Every read goes through the partner API's service
functions, so the portal and the API answer alike (same paging, same
"not yours is not found").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from api.errors import DomainError
from api.money import format_cents
from api.partner_api import schemas, services
from api.portal.guards import SignedIn, StaffSession, base_context
from api.portal.pages import page
from api.settlement.periods import SETTLEMENT_TIMEZONE
from api.web.state import runtime

STATEMENTS = "/portal/statements"
STATEMENTS_PAGE_SIZE = 20
_LIST_TEMPLATE = "portal/statements.html"
_DETAIL_TEMPLATE = "portal/statement.html"
_MICROS_PER_EURO = 1_000_000

CATEGORY_LABELS = {
    "points_issued": "Points issued",
    "refunds": "Refunds",
    "points_redeemed": "Points redeemed",
    "sponsored_rewards": "Sponsored rewards and matched donations",
}
CATEGORY_HINTS = {
    "points_issued": "Points your customers earned at your till: you pay for them.",
    "refunds": "Points taken back by your refunds: paid back to you.",
    "points_redeemed": "Points your customers spent at your till: Kring pays you.",
    "sponsored_rewards": (
        "Challenge rewards you sponsored and donations you matched, at your issuance"
        " price: you pay for them (less rewards taken back)."
    ),
}


def exact_euros(micros: int) -> str:
    """-1_234_500 -> "-1,2345 €": exact, at least two decimals, no rounding."""
    whole, fraction = divmod(abs(micros), _MICROS_PER_EURO)
    decimals = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return ("-" if micros < 0 else "") + f"{whole:,}".replace(",", ".") + f",{decimals} €"


def _day(value: date) -> str:
    return f"{value.day} {value:%b %Y}"


def period_label(statement: schemas.StatementOut) -> str:
    """The business days the statement covers, in the programme's time zone."""
    if statement.first_day == statement.last_day:
        return f"{statement.first_day:%a} {_day(statement.first_day)}"
    return f"{_day(statement.first_day)} \N{EN DASH} {_day(statement.last_day)}"


def _local(value: datetime) -> str:
    return value.astimezone(SETTLEMENT_TIMEZONE).strftime("%d %b %Y %H:%M") + " (Amsterdam)"


def who_pays(net_cents: int) -> str:
    if net_cents > 0:
        return "Kring pays you"
    if net_cents < 0:
        return "You pay Kring"
    return "Nothing to settle"


@dataclass(frozen=True, slots=True)
class LineView:
    category: str
    label: str
    hint: str
    entries: int
    points: int
    exact: str
    amount: str
    negative: bool


@dataclass(frozen=True, slots=True)
class StatementView:
    """A statement with its figures formatted for staff (nl/en: "-1,23 €")."""

    id: str
    period: str
    period_label: str
    entries: int
    net: str
    net_negative: bool
    who_pays: str
    closed_at: str
    lines: list[LineView]
    csv_url: str


def view(statement: schemas.StatementOut) -> StatementView:
    return StatementView(
        id=str(statement.id),
        period=statement.period,
        period_label=period_label(statement),
        # The lines' entries (what the CSV lists row by row); the statement's own
        # count also holds entries that move no money and the run's money entry.
        entries=sum(line.entries for line in statement.lines),
        net=format_cents(statement.net_cents),
        net_negative=statement.net_cents < 0,
        who_pays=who_pays(statement.net_cents),
        closed_at=_local(statement.closed_at),
        lines=[
            LineView(
                category=line.category,
                label=CATEGORY_LABELS.get(line.category, line.category),
                hint=CATEGORY_HINTS.get(line.category, ""),
                entries=line.entries,
                points=line.points,
                exact=exact_euros(line.amount_micros),
                amount=format_cents(line.amount_cents),
                negative=line.amount_cents < 0,
            )
            for line in statement.lines
        ],
        csv_url=f"{STATEMENTS}/{statement.id}/csv",
    )


def _message(request: Request[Any, Any, Any], who: StaffSession, exc: DomainError) -> Response[str]:
    context = {**base_context(who, "statements"), "title": "Statements", "message": exc.detail}
    return page(request, "portal/message.html", context, status=exc.status)


def _readable(exc: DomainError) -> DomainError:
    """Service messages speak to API developers; staff read the same facts plainly."""
    messages = {
        "invalid_cursor": "This list link is not valid any more: open Statements again.",
        "invalid_statement_id": "This is not a statement link: open it from Statements.",
        "statement_not_found": "There is no such statement for your shop.",
    }
    return DomainError(messages.get(exc.code, exc.detail), code=exc.code, status=exc.status)


@get("/statements", include_in_schema=False)
async def statements_page(
    request: Request[Any, Any, Any], who: SignedIn, cursor: FromQuery[str | None] = None
) -> Response[str]:
    """Newest period first; "Load more" asks for the next rows as a fragment
    (htmx), or the next page without JavaScript."""
    rt = runtime(request.app.state)
    try:
        found = await services.list_statements(
            rt.db, who.staff.partner_id, limit=STATEMENTS_PAGE_SIZE, cursor=cursor
        )
    except DomainError as exc:
        return _message(request, who, _readable(exc))
    context = {
        **base_context(who, "statements"),
        "statements": [view(s) for s in found.items],
        "next_cursor": found.next_cursor,
    }
    return page(request, _LIST_TEMPLATE, context, fragment="statement_rows")


@get("/statements/{statement_id:str}", include_in_schema=False)
async def statement_page(
    request: Request[Any, Any, Any], who: SignedIn, statement_id: FromPath[str]
) -> Response[str]:
    rt = runtime(request.app.state)
    try:
        found = await services.get_statement(rt.db, who.staff.partner_id, statement_id)
    except DomainError as exc:
        return _message(request, who, _readable(exc))
    context = {**base_context(who, "statements"), "statement": view(found)}
    return page(request, _DETAIL_TEMPLATE, context)


@get("/statements/{statement_id:str}/csv", include_in_schema=False)
async def statement_csv(
    request: Request[Any, Any, Any], who: SignedIn, statement_id: FromPath[str]
) -> Response[Any]:
    rt = runtime(request.app.state)
    try:
        download = await services.statement_download(rt.db, who.staff.partner_id, statement_id)
    except DomainError as exc:
        return _message(request, who, _readable(exc))
    return Stream(
        download.chunks,
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{download.filename}"',
            "Cache-Control": "no-store",
        },
    )


HANDLERS = [statements_page, statement_page, statement_csv]
