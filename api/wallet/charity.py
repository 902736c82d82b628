"""The wallet's charity pages. `/charities` lists the charities with a form
to give points once or every month; `/donations` is the member's history and
monthly donations; `/donations/statement/{year}` a printable yearly statement.
Forms carry the session's CSRF token and an idempotency key made when the
form was rendered, so a form sent twice gives once. `/charities/{id}`
(public) shows a charity and its running total.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from api.charity import charities, donations, monthly
from api.db.pool import transaction
from api.errors import DomainError
from api.member_auth.guards import (
    WalletSession,
    find_wallet_session,
    require_wallet_csrf,
    sign_in_location,
    wallet_session,
)
from api.wallet.pages import page
from api.web.params import RowId
from api.web.state import runtime
from api.web.templates import as_sentence

Who = NamedDependency[WalletSession]
POINTS_INPUT_CHARS_MAX = 12


def _form_points(form: FormMultiDict, name: str) -> int:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if not text.isdigit() or len(text) > POINTS_INPUT_CHARS_MAX:
        raise DomainError("enter the points as a whole number", code="invalid_points")
    return int(text)


def _form_key(form: FormMultiDict) -> str | None:
    value = form.get("key")
    return value if isinstance(value, str) and value else None


async def _charities_page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    *,
    error: str | None = None,
    failed_charity: int | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    member_id = who.principal.member_id
    return page(
        request,
        "wallet/charities.html",
        {
            "nav": "give",
            "csrf_token": who.csrf_token,
            "charities": await charities.list_charities(rt.db, active_only=True),
            "available": await donations.available_points(rt.db, member_id),
            "points_min": donations.DONATION_POINTS_MIN,
            # One key per rendered form: sending it twice gives once.
            "form_key": secrets.token_urlsafe(16),
            "error": error,
            "failed_charity": failed_charity,
        },
        status=status,
    )


async def _donations_page(
    request: Request[Any, Any, Any], who: WalletSession, *, notice: str | None = None
) -> Response[str]:
    rt = runtime(request.app.state)
    member_id = who.principal.member_id
    years = await donations.donation_years(rt.db, member_id)
    return page(
        request,
        "wallet/donations.html",
        {
            "nav": "give",
            "csrf_token": who.csrf_token,
            "donations": await donations.member_donations(rt.db, member_id),
            "monthly": await monthly.member_monthly(rt.db, member_id),
            "years": years,
            "notice": notice,
        },
    )


@get("/charities", include_in_schema=False)
async def charity_list(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    return await _charities_page(request, who)


@post("/charities/{charity_id:int}/donate", include_in_schema=False)
async def donate(request: Request[Any, Any, Any], who: Who, charity_id: RowId) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    rt = runtime(request.app.state)
    try:
        made = await donations.donate(
            rt.db,
            who.principal.member_id,
            charity_id,
            _form_points(form, "points"),
            _form_key(form),
            rt.clock.now(),
        )
    except DomainError as exc:
        return await _charities_page(
            request,
            who,
            error=as_sentence(exc.detail),
            failed_charity=charity_id,
            status=exc.status,
        )
    notice = f"Thank you: you gave {made.points} points to {made.charity_name}."
    if made.matched_points:
        notice += f" A partner matched it with {made.matched_points} points."
    if made.replayed:
        notice = "This donation was already made."
    return await _donations_page(request, who, notice=notice)


@post("/charities/{charity_id:int}/monthly", include_in_schema=False)
async def set_monthly(
    request: Request[Any, Any, Any], who: Who, charity_id: RowId
) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    rt = runtime(request.app.state)
    now = rt.clock.now()
    try:
        points = _form_points(form, "points")
        order = await transaction(
            rt.db,
            lambda conn: monthly.set_monthly(
                conn, who.principal.member_id, charity_id, points, now
            ),
        )
    except DomainError as exc:
        return await _charities_page(
            request,
            who,
            error=as_sentence(exc.detail),
            failed_charity=charity_id,
            status=exc.status,
        )
    return await _donations_page(
        request,
        who,
        notice=f"You give {order.points} points to {order.charity_name} every month,"
        " starting today. A month you do not have the points is skipped.",
    )


@post("/donations/monthly/{order_id:int}/cancel", include_in_schema=False)
async def cancel_monthly(
    request: Request[Any, Any, Any], who: Who, order_id: RowId
) -> Response[str]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    now = rt.clock.now()
    order = await transaction(
        rt.db,
        lambda conn: monthly.cancel_monthly(conn, who.principal.member_id, order_id, now),
    )
    return await _donations_page(
        request, who, notice=f"Your monthly donation to {order.charity_name} is stopped."
    )


@get("/donations", include_in_schema=False)
async def donation_history(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    return await _donations_page(request, who)


@get("/donations/statement/{year:int}", include_in_schema=False)
async def donation_statement(
    request: Request[Any, Any, Any], who: Who, year: FromPath[int]
) -> Response[str]:
    rt = runtime(request.app.state)
    statement = await donations.year_statement(rt.db, who.principal.member_id, year)
    return page(
        request,
        "wallet/donation_statement.html",
        {"nav": "give", "csrf_token": who.csrf_token, "statement": statement},
    )


# Public: no sign-in -------------------------------------------------------------


@get("/charities/{charity_id:int}", include_in_schema=False)
async def charity_public(request: Request[Any, Any, Any], charity_id: RowId) -> Response[str]:
    rt = runtime(request.app.state)
    found = await charities.get_charity(rt.db, charity_id)
    session = await find_wallet_session(request)
    nav = {"nav": "give", "csrf_token": session.csrf_token} if session else {}
    if found is None:
        return page(
            request,
            "wallet/message.html",
            {**nav, "title": "Charity not found", "message": "There is no such charity."},
            status=404,
        )
    return page(
        request,
        "charity_public.html",
        {
            **nav,
            "charity": found,
            "signed_in": session is not None,
            "sign_in_url": sign_in_location("/charities"),
        },
    )


charity_wallet_router = Router(
    path="/",
    route_handlers=[
        charity_list,
        donate,
        set_monthly,
        cancel_monthly,
        donation_history,
        donation_statement,
    ],
    dependencies={"who": Provide(wallet_session)},
)
charity_public_handlers = [charity_public]
