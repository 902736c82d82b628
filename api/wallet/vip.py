"""The wallet's VIP page, `/vip`: the plans with their price and benefits
and what each would have added to the member's last 90 days, the member's
subscription (status, period end), subscribing (a form post that sends the
browser to the payment checkout), cancelling at the period's end and
resubscribing. The checkout sends the member back here."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect

from api.errors import DomainError
from api.member_api.vip import vip_return_url
from api.member_auth.guards import WalletSession, require_wallet_csrf, wallet_session
from api.vip import subscriptions, views
from api.wallet.pages import page
from api.web.state import runtime
from api.web.templates import as_sentence

Who = NamedDependency[WalletSession]
VIP_PATH = "/vip"
PLAN_FIELD_CHARS_MAX = 40


async def _vip_page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    overview = await views.vip_overview(rt.db, who.principal.member_id, rt.clock.now())
    return page(
        request,
        "wallet/vip.html",
        {
            "nav": "vip",
            "csrf_token": who.csrf_token,
            "vip": overview,
            "sub": overview.subscription,
            "notice": notice,
            "error": error,
        },
        status=status,
    )


@get(VIP_PATH, include_in_schema=False)
async def vip(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    return await _vip_page(request, who)


async def _plan_field(request: Request[Any, Any, Any]) -> str | None:
    value = (await request.form()).get("plan_code")
    return value[:PLAN_FIELD_CHARS_MAX] if isinstance(value, str) and value else None


@post(f"{VIP_PATH}/subscribe", include_in_schema=False)
async def vip_subscribe(request: Request[Any, Any, Any], who: Who) -> Response[Any]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    plan_code = await _plan_field(request)
    try:
        if plan_code is None:
            raise DomainError("choose a plan", code="vip_plan_required")
        started = await subscriptions.subscribe(
            rt.db,
            who.principal.member_id,
            plan_code,
            redirect_url=vip_return_url(request),
            now=rt.clock.now(),
        )
    except DomainError as exc:
        return await _vip_page(request, who, error=as_sentence(exc.detail), status=exc.status)
    if started.checkout_url is None:
        return await _vip_page(request, who, notice="You are VIP.")
    return Redirect(started.checkout_url, status_code=303)


@post(f"{VIP_PATH}/cancel", include_in_schema=False)
async def vip_cancel(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    try:
        sub = await subscriptions.cancel(rt.db, who.principal.member_id, rt.clock.now())
    except DomainError as exc:
        return await _vip_page(request, who, error=as_sentence(exc.detail), status=exc.status)
    notice = (
        "Your VIP membership has ended."
        if sub.status == "cancelled"
        else "Cancelled: you stay VIP until the end of the paid period, with no renewal."
    )
    return await _vip_page(request, who, notice=notice)


@post(f"{VIP_PATH}/resubscribe", include_in_schema=False)
async def vip_resubscribe(request: Request[Any, Any, Any], who: Who) -> Response[Any]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    try:
        started = await subscriptions.resubscribe(
            rt.db,
            who.principal.member_id,
            await _plan_field(request),
            redirect_url=vip_return_url(request),
            now=rt.clock.now(),
        )
    except DomainError as exc:
        return await _vip_page(request, who, error=as_sentence(exc.detail), status=exc.status)
    if started.checkout_url is None:
        return await _vip_page(request, who, notice="Welcome back: your VIP renews as before.")
    return Redirect(started.checkout_url, status_code=303)


vip_wallet_router = Router(
    path="/",
    route_handlers=[vip, vip_subscribe, vip_cancel, vip_resubscribe],
    dependencies={"who": Provide(wallet_session)},
)
