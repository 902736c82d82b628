"""Back-office member pages: search, one member (profile, balances, ledger),
block and unblock, data export, erasure, and the adjustment form.

Thin handlers: read the form, call `api.coalition.member_admin` or
`api.ledger.adjustments`, render. Roles: owner, support and finance find and
read members; owner and support change them (block, export, erase) and
request adjustments (approval: api/backoffice/adjustment_pages.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import asyncpg
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream

from api.admin_auth.principal import Role
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, page_of
from api.backoffice.pages import base_context, page
from api.coalition import member_admin
from api.coalition.member_admin import MemberSearch
from api.errors import DomainError
from api.ledger import adjustments
from api.ledger.adjustments import AdjustmentFilter, AdjustmentRequest, InvalidAdjustment
from api.web.state import runtime
from api.web.templates import as_sentence

MEMBER_VIEW_ROLES: tuple[Role, ...] = ("owner", "support", "finance")
MEMBER_CHANGE_ROLES: tuple[Role, ...] = ("owner", "support")
MEMBER_ADJUSTMENTS_SHOWN = 10
PATH = "/backoffice/members"

T = TypeVar("T")


def _optional(value: str | None) -> str | None:
    return value.strip() or None if value else None


def member_search(q: str | None, status: str | None, tier: str | None) -> MemberSearch:
    return MemberSearch(text=(q or "").strip(), status=_optional(status), tier=_optional(tier))


def _query(search: MemberSearch) -> str:
    """The search as a query string, for links that keep it (next page, CSV)."""
    fields = {"q": search.text, "status": search.status or "", "tier": search.tier or ""}
    return urlencode({k: v for k, v in fields.items() if v})


async def stream_rows(
    pool: asyncpg.Pool,
    rows: Callable[[asyncpg.Connection], AsyncIterator[T]],
    to_cells: Callable[[T], Sequence[object]],
) -> AsyncIterator[Sequence[object]]:
    """Rows of a server-side cursor, for a CSV that streams: the connection is
    taken when the download starts and given back when it ends."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        async for row in rows(conn):
            yield to_cells(row)


# Search -----------------------------------------------------------------------


@get("/members", opt={"roles": MEMBER_VIEW_ROLES})
async def members_page(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    q: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    tier: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    db = runtime(request.app.state).db
    search = member_search(q, status, tier)
    rows = await member_admin.search_members(db, search, limit=PAGE_SIZE + 1, cursor=cursor)
    listed = page_of(rows, lambda m: (m.id,))
    return page(
        request,
        "backoffice/members.html",
        {
            **base_context(who, "members"),
            "search": search,
            "query": _query(search),
            "statuses": member_admin.MEMBER_STATUSES,
            "tiers": await member_admin.tier_choices(db),
            "rows": listed.items,
            "next_cursor": listed.next_cursor,
        },
        fragment="results",
    )


MEMBERS_CSV_HEADER = (
    "member_id",
    "card_number",
    "email",
    "display_name",
    "status",
    "tier",
    "available_points",
    "joined_at",
)


@get("/members/export.csv", opt={"roles": MEMBER_VIEW_ROLES})
async def members_csv(
    request: Request[Any, Any, Any],
    q: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    tier: FromQuery[str | None] = None,
) -> Stream:
    search = member_search(q, status, tier)
    return csv_response(
        "members.csv",
        MEMBERS_CSV_HEADER,
        stream_rows(
            runtime(request.app.state).db,
            lambda conn: member_admin.iterate_members(conn, search),
            lambda m: (
                m.id,
                m.card_number,
                m.email,
                m.display_name,
                m.status,
                m.tier_code,
                m.available_points,
                m.created_at.isoformat(),
            ),
        ),
    )


# One member --------------------------------------------------------------------


async def member_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    member_id: int,
    *,
    cursor: FromQuery[str | None] = None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    profile = await member_admin.member_profile(rt.db, member_id, rt.clock.now())
    ledger = page_of(
        await member_admin.member_ledger(rt.db, member_id, limit=PAGE_SIZE + 1, cursor=cursor),
        lambda row: (row.entry_id,),
    )
    recent = await adjustments.list_adjustments(
        rt.db, AdjustmentFilter(member_id=member_id), limit=MEMBER_ADJUSTMENTS_SHOWN
    )
    role = who.admin.role
    return page(
        request,
        "backoffice/member.html",
        {
            **base_context(who, "members"),
            "member": profile,
            "ledger": ledger.items,
            "next_cursor": ledger.next_cursor,
            "adjustments": recent,
            "can_change": role in MEMBER_CHANGE_ROLES,
            "can_adjust": role in adjustments.REQUEST_ROLES,
            "threshold_points": rt.settings.adjustment_approval_points,
            "form": form or {"direction": "credit", "points": "", "reason": ""},
            "errors": errors or {},
            "idempotency_key": uuid.uuid4().hex,
        },
        fragment="ledger",
        status=status,
    )


@get("/members/{member_id:int}", opt={"roles": MEMBER_VIEW_ROLES})
async def member_detail(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    member_id: FromPath[int],
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    return await member_page(request, who, member_id, cursor=cursor)


@get("/members/{member_id:int}/ledger.csv", opt={"roles": MEMBER_VIEW_ROLES})
async def member_ledger_csv(request: Request[Any, Any, Any], member_id: FromPath[int]) -> Stream:
    rt = runtime(request.app.state)
    # Checked first: a download of a member that does not exist is a 404, not an empty file.
    await member_admin.member_profile(rt.db, member_id, rt.clock.now())
    return csv_response(
        f"member-{member_id}-ledger.csv",
        member_admin.LEDGER_HEADER,
        stream_rows(
            rt.db,
            lambda conn: member_admin.iterate_ledger(conn, member_id),
            member_admin.ledger_csv_row,
        ),
    )


@post("/members/{member_id:int}/status", opt={"roles": MEMBER_CHANGE_ROLES})
async def member_status(
    request: Request[Any, Any, Any], who: SignedInAdmin, member_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    await member_admin.change_status(
        rt.db, who.admin, member_id, form_text(form, "status"), now=rt.clock.now()
    )
    return Redirect(f"{PATH}/{member_id}", status_code=303)


@post("/members/{member_id:int}/export", opt={"roles": MEMBER_CHANGE_ROLES}, status_code=200)
async def member_export(
    request: Request[Any, Any, Any], who: SignedInAdmin, member_id: FromPath[int]
) -> Response[bytes]:
    # A POST: taking someone's data is a change to the audit log, never a prefetch.
    require_csrf(request, await request.form(), who)
    rt = runtime(request.app.state)
    document = await member_admin.export_data(rt.db, who.admin, member_id, now=rt.clock.now())
    return Response(
        json.dumps(document, indent=2, ensure_ascii=False).encode(),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="kring-member-{member_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@get("/members/{member_id:int}/erase", opt={"roles": MEMBER_CHANGE_ROLES})
async def member_erase_form(
    request: Request[Any, Any, Any], who: SignedInAdmin, member_id: FromPath[int]
) -> Response[str]:
    return await _erase_page(request, who, member_id)


async def _erase_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    member_id: int,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    profile = await member_admin.member_profile(rt.db, member_id, rt.clock.now())
    return page(
        request,
        "backoffice/member_erase.html",
        {**base_context(who, "members"), "member": profile, "error": error},
        status=status,
    )


@post("/members/{member_id:int}/erase", opt={"roles": MEMBER_CHANGE_ROLES})
async def member_erase(
    request: Request[Any, Any, Any], who: SignedInAdmin, member_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    try:
        await member_admin.erase_member(
            rt.db,
            who.admin,
            member_id,
            confirm_card_number=form_text(form, "card_number"),
            now=rt.clock.now(),
        )
    except DomainError as refused:
        if refused.status == 404:
            raise
        return await _erase_page(
            request, who, member_id, error=as_sentence(refused.detail), status=refused.status
        )
    return Redirect(f"{PATH}/{member_id}", status_code=303)


@post("/members/{member_id:int}/adjustments", opt={"roles": adjustments.REQUEST_ROLES})
async def member_adjust(
    request: Request[Any, Any, Any], who: SignedInAdmin, member_id: FromPath[int]
) -> Response[str]:
    form = await request.form()
    require_csrf(request, form, who)
    rt = runtime(request.app.state)
    values = {name: form_text(form, name) for name in ("direction", "points", "reason")}
    # "2,000" as the pages write points; anything else that is not digits is refused.
    points_text = values["points"].replace(",", "").replace(" ", "")
    request_made = AdjustmentRequest(
        member_id=member_id,
        direction=values["direction"],
        points=int(points_text) if points_text.isascii() and points_text.isdigit() else 0,
        reason=values["reason"],
        idempotency_key=form_text(form, "idempotency_key"),
    )
    try:
        made = await adjustments.request_adjustment(
            rt.db,
            who.admin,
            request_made,
            threshold_points=rt.settings.adjustment_approval_points,
            now=rt.clock.now(),
        )
    except InvalidAdjustment as bad:
        field = "form" if bad.field == "idempotency_key" else bad.field
        return await member_page(
            request,
            who,
            member_id,
            form=values,
            errors={field: as_sentence(bad.detail)},
            status=bad.status,
        )
    except DomainError as refused:
        if refused.status == 404:
            raise
        return await member_page(
            request,
            who,
            member_id,
            form=values,
            errors={"form": as_sentence(refused.detail)},
            status=refused.status,
        )
    return Redirect(f"/backoffice/adjustments/{made.id}", status_code=303)


HANDLERS: list[Any] = [
    members_page,
    members_csv,
    member_detail,
    member_ledger_csv,
    member_status,
    member_export,
    member_erase_form,
    member_erase,
    member_adjust,
]
