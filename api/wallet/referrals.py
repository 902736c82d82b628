"""Referral pages. `/refer` (wallet, signed in): the member's code and link
with a Share button (Web Share where the browser has it, else copy), how the
reward works, and, for new members, a form to enter a friend's code.
`/join/{code}` (public): who invites and how to join; signing in from there
comes back to `/refer?code=…` with the code filled in, one tap to claim
(a GET never claims: the claim is a form post with the session's CSRF token).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request, Response, Router, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery

from api.engagement import referrals
from api.errors import DomainError
from api.member_api.referrals import site_url
from api.member_auth.guards import (
    WalletSession,
    find_wallet_session,
    require_wallet_csrf,
    sign_in_location,
    wallet_session,
)
from api.wallet.pages import page
from api.web.state import runtime
from api.web.templates import as_sentence

Who = NamedDependency[WalletSession]
REFER_PATH = "/refer"
CODE_FIELD = "code"


def _refer_next(code: str) -> str:
    """Where sign-in from a join page leads: the refer page with the code in."""
    return f"{REFER_PATH}?{CODE_FIELD}={quote(code, safe='')}"


def _form_text(form: FormMultiDict, name: str) -> str:
    value = form.get(name)
    return value[: referrals.CODE_INPUT_CHARS_MAX] if isinstance(value, str) else ""


async def _refer_page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    *,
    entered: str = "",
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    summary = await referrals.referral_summary(
        rt.db, who.principal.member_id, rt.clock.now(), base_url=site_url(request)
    )
    return page(
        request,
        "wallet/refer.html",
        {
            "nav": "refer",
            "csrf_token": who.csrf_token,
            "summary": summary,
            "entered": entered,
            "code_max": referrals.CODE_INPUT_CHARS_MAX,
            "notice": notice,
            "error": error,
        },
        status=status,
    )


@get(REFER_PATH, include_in_schema=False)
async def refer(
    request: Request[Any, Any, Any], who: Who, code: FromQuery[str] = ""
) -> Response[str]:
    return await _refer_page(request, who, entered=code[: referrals.CODE_INPUT_CHARS_MAX])


@post(f"{REFER_PATH}/claim", include_in_schema=False)
async def refer_claim(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    await require_wallet_csrf(request)
    form = await request.form()
    entered = _form_text(form, CODE_FIELD)
    rt = runtime(request.app.state)
    try:
        referral = await referrals.claim_referral(
            rt.db, who.principal.member_id, entered, rt.clock.now()
        )
    except DomainError as exc:
        return await _refer_page(
            request, who, entered=entered, error=as_sentence(exc.detail), status=exc.status
        )
    notice = (
        "You had already entered this code."
        if referral.replayed
        else "Your friend's code is in. Your welcome points come after your first purchase."
    )
    return await _refer_page(request, who, notice=notice)


# Public: no sign-in -------------------------------------------------------------


@get(f"{referrals.JOIN_PATH}/{{code:str}}", include_in_schema=False)
async def join(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[str]:
    rt = runtime(request.app.state)
    found = await referrals.invitation(rt.db, code)
    session = await find_wallet_session(request)
    nav = {"nav": "refer", "csrf_token": session.csrf_token} if session else {}
    if found is None:
        return page(
            request,
            "wallet/message.html",
            {
                **nav,
                "title": "Invitation not found",
                "message": "This invitation link is not valid. Ask your friend to send it again.",
            },
            status=404,
        )
    next_path = _refer_next(found.code)
    return page(
        request,
        "wallet/join.html",
        {
            **nav,
            "invitation": found,
            "signed_in": session is not None,
            "next_path": next_path,
            "sign_in_url": sign_in_location(next_path),
        },
    )


referral_wallet_router = Router(
    path="/",
    route_handlers=[refer, refer_claim],
    dependencies={"who": Provide(wallet_session)},
)
referral_public_handlers = [join]
