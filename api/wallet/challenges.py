"""The wallet's challenges page: `/challenges` lists the member's challenges
with progress bars and those they can join; `POST /challenges/{id}/join`
joins one (a form with the session's CSRF token; with htmx, the list is
swapped in place)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide

from api.engagement import challenge_views as views
from api.errors import DomainError
from api.member_auth.guards import WalletSession, require_wallet_csrf, wallet_session
from api.wallet.pages import page
from api.web.params import RowId
from api.web.state import runtime
from api.web.templates import as_sentence

Who = NamedDependency[WalletSession]


async def _page(
    request: Request[Any, Any, Any],
    who: WalletSession,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    found = await views.list_member_challenges(rt.db, who.principal.member_id, rt.clock.now())
    return page(
        request,
        "wallet/challenges.html",
        {
            "nav": "challenges",
            "csrf_token": who.csrf_token,
            "challenges": found,
            "notice": notice,
            "error": error,
        },
        fragment="list",
        status=status,
    )


@get("/challenges", include_in_schema=False)
async def challenge_list(request: Request[Any, Any, Any], who: Who) -> Response[str]:
    return await _page(request, who)


@post("/challenges/{challenge_id:int}/join", include_in_schema=False)
async def challenge_join(
    request: Request[Any, Any, Any], who: Who, challenge_id: RowId
) -> Response[str]:
    await require_wallet_csrf(request)
    rt = runtime(request.app.state)
    try:
        joined = await views.join_challenge(
            rt.db, who.principal.member_id, challenge_id, rt.clock.now()
        )
    except DomainError as exc:
        return await _page(request, who, error=as_sentence(exc.detail), status=exc.status)
    return await _page(
        request, who, notice=f"You joined “{joined.challenge.name}”: purchases from now count."
    )


challenge_wallet_router = Router(
    path="/",
    route_handlers=[challenge_list, challenge_join],
    dependencies={"who": Provide(wallet_session)},
)
