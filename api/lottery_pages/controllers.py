"""Lottery pages. `/lotteries` and `/lotteries/{id}` are wallet pages (rules,
odds, prizes, your tickets, buy a ticket, take the free ticket; forms carry
the session's CSRF token). `/lotteries/{id}/verify` and `/lotteries/{id}/draw.json`
are public: anyone can check a draw without signing in."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide

from api.engagement import lotteries
from api.errors import DomainError
from api.member_auth.guards import (
    WalletSession,
    find_wallet_session,
    require_wallet_csrf,
    wallet_session,
)
from api.wallet.pages import page
from api.web.params import RowId
from api.web.state import runtime

Who = NamedDependency[WalletSession]
IDEMPOTENCY_FIELD = "purchase_key"


def _base(who: WalletSession) -> dict[str, Any]:
    return {"nav": "lotteries", "csrf_token": who.csrf_token}


@get("/lotteries", include_in_schema=False)
async def lottery_list(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    rt = runtime(request.app.state)
    found = await lotteries.list_lotteries(rt.db, who.principal.member_id, rt.clock.now())
    return page(request, "wallet/lotteries.html", {**_base(who), "lotteries": found})


async def _detail(
    request: Request[Any, Any, Any],
    who: WalletSession,
    lottery_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    found = await lotteries.get_lottery(rt.db, lottery_id, who.principal.member_id, rt.clock.now())
    if found is None or (found.status == "cancelled" and not found.my_tickets):
        return page(
            request,
            "wallet/message.html",
            {**_base(who), "title": "Not found", "message": "There is no such lottery."},
            status=404,
        )
    return page(
        request,
        "wallet/lottery.html",
        {
            **_base(who),
            "lottery": found,
            "notice": notice,
            "error": error,
            # A fresh key per rendering: a double-tapped button buys one ticket.
            "purchase_key": uuid4().hex,
        },
        status=status,
    )


@get("/lotteries/{lottery_id:int}", include_in_schema=False)
async def lottery_detail(
    request: Request[Any, Any, Any], who: Who, lottery_id: RowId
) -> Response[str]:
    return await _detail(request, who, lottery_id)


@post("/lotteries/{lottery_id:int}/tickets", include_in_schema=False)
async def lottery_buy(
    request: Request[Any, Any, Any], who: Who, lottery_id: RowId
) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    key = form.get(IDEMPOTENCY_FIELD)
    rt = runtime(request.app.state)
    try:
        ticket = await lotteries.buy_ticket(
            rt.db,
            who.principal.member_id,
            lottery_id,
            key if isinstance(key, str) else None,
            rt.clock.now(),
        )
    except DomainError as exc:
        return await _detail(request, who, lottery_id, error=exc.detail, status=exc.status)
    return await _detail(request, who, lottery_id, notice=f"Ticket {ticket.number} is yours.")


@post("/lotteries/{lottery_id:int}/free-ticket", include_in_schema=False)
async def lottery_free(
    request: Request[Any, Any, Any], who: Who, lottery_id: RowId
) -> Response[str]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    try:
        ticket = await lotteries.take_free_ticket(
            rt.db, who.principal.member_id, lottery_id, rt.clock.now()
        )
    except DomainError as exc:
        return await _detail(request, who, lottery_id, error=exc.detail, status=exc.status)
    return await _detail(request, who, lottery_id, notice=f"Free ticket {ticket.number} is yours.")


# Public: no sign-in -------------------------------------------------------------


@get("/lotteries/{lottery_id:int}/verify", include_in_schema=False)
async def lottery_verify(request: Request[Any, Any, Any], lottery_id: RowId) -> Response[str]:
    rt = runtime(request.app.state)
    found = await lotteries.get_lottery(rt.db, lottery_id, None, rt.clock.now())
    session = await find_wallet_session(request)
    nav = {"nav": "lotteries", "csrf_token": session.csrf_token} if session else {}
    if found is None:
        return page(
            request,
            "wallet/message.html",
            {**nav, "title": "Not found", "message": "There is no such lottery."},
            status=404,
        )
    return page(request, "lottery_verify.html", {**nav, "lottery": found})


@get("/lotteries/{lottery_id:int}/draw.json", include_in_schema=False)
async def lottery_draw_json(request: Request[Any, Any, Any], lottery_id: RowId) -> Response[Any]:
    document = await lotteries.draw_document(runtime(request.app.state).db, lottery_id)
    if document is None:
        raise DomainError("this lottery has not been drawn", code="lottery_not_drawn", status=404)
    return Response(
        document,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="kring-lottery-{lottery_id}-draw.json"',
            "Cache-Control": "public, max-age=300",
        },
    )


lottery_wallet_router = Router(
    path="/",
    route_handlers=[lottery_list, lottery_detail, lottery_buy, lottery_free],
    dependencies={"who": Provide(wallet_session)},
)
lottery_public_handlers = [lottery_verify, lottery_draw_json]
