"""What wallet pages and member API handlers share: who is signed in, and CSRF.

- `wallet_member`: a dependency for wallet pages. The session cookie (a JWT,
  audience `kring:wallet`) must name a live `member_sessions` row of an active
  member; otherwise `SignInRequired` is raised, which the app turns into a 303
  to `/sign-in?next=<this page>` (an `HX-Redirect` for htmx requests).
- `wallet_session`: the same, with the session's CSRF token for forms.
- `api_member`: a dependency for `/member/v1` handlers: `Authorization: Bearer`
  with a member access token (audience `kring:member`, one hour), else a 401
  problem+json (`missing_token`, `invalid_token`, `token_expired`).
- CSRF: every wallet form carries `csrf_token` (hidden field `CSRF_FIELD`, or
  the `X-CSRF-Token` header for htmx requests); `require_wallet_csrf(request)`
  refuses a post without the session's token with `FormExpired` (a 403 page).

    @post("/profile", dependencies={"who": Provide(wallet_session)})
    async def save(request: Request, who: WalletSession) -> ...:
        await require_wallet_csrf(request)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from uuid import UUID

from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.response import Redirect

from api.engagement.inbox import unread_count
from api.errors import Unauthorized
from api.member_auth import tokens
from api.member_auth.principal import MemberPrincipal
from api.member_auth.rate_limits import RetryLater
from api.member_auth.sessions import live_session
from api.web.cookies import cookie_secure, csrf_matches
from api.web.problems import domain_error
from api.web.state import runtime

WALLET_SESSION_COOKIE = "kring_wallet"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SIGN_IN_PATH = "/sign-in"
_STATE_KEY = "kring_wallet_session"
# The signed-in member's unread inbox count, for the wallet nav's badge
# (api/wallet/pages.py puts it in every page's context).
INBOX_UNREAD_STATE_KEY = "kring_inbox_unread"


class SignInRequired(Exception):
    """No valid wallet session: send the browser to sign in, then back here."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class FormExpired(Exception):
    """A wallet form was posted without its session's CSRF token."""


@dataclass(frozen=True, slots=True)
class WalletSession:
    principal: MemberPrincipal
    session_id: UUID
    csrf_token: str


# Handler parameter types: `who: Member` with Provide(wallet_member) or
# Provide(api_member); `who: Wallet` with Provide(wallet_session).
Member = NamedDependency[MemberPrincipal]
Wallet = NamedDependency[WalletSession]


def _secret(request: Request[Any, Any, Any]) -> str:
    return runtime(request.app.state).settings.jwt_secret or ""


def _here(request: Request[Any, Any, Any]) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def find_wallet_session(request: Request[Any, Any, Any]) -> WalletSession | None:
    """The request's live wallet session, or None (looked up once per request)."""
    cached = request.state.get(_STATE_KEY)
    if isinstance(cached, WalletSession):
        return cached
    rt = runtime(request.app.state)
    now = rt.clock.now()
    claims = tokens.read_session_token(
        request.cookies.get(WALLET_SESSION_COOKIE),
        audience=tokens.WALLET_AUDIENCE,
        secret=_secret(request),
        now=now,
    )
    if claims is None:
        return None
    principal = await live_session(
        rt.db, claims.session_id, claims.member_public_id, "wallet", now=now
    )
    if principal is None:
        return None
    found = WalletSession(
        principal,
        claims.session_id,
        tokens.csrf_token_for(claims.session_id, secret=_secret(request)),
    )
    request.state[_STATE_KEY] = found
    request.state[INBOX_UNREAD_STATE_KEY] = await unread_count(rt.db, principal.member_id)
    return found


async def wallet_session(request: Request[Any, Any, Any]) -> WalletSession:
    found = await find_wallet_session(request)
    if found is None:
        raise SignInRequired(_here(request))
    return found


async def wallet_member(request: Request[Any, Any, Any]) -> MemberPrincipal:
    return (await wallet_session(request)).principal


async def wallet_csrf_token(request: Request[Any, Any, Any]) -> str:
    """The token to put in a wallet form's hidden `csrf_token` field."""
    return (await wallet_session(request)).csrf_token


async def require_wallet_csrf(request: Request[Any, Any, Any]) -> None:
    """Refuse a wallet post that does not carry its session's CSRF token."""
    session = await wallet_session(request)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not csrf_matches(session.csrf_token, sent):
        raise FormExpired


async def api_member(request: Request[Any, Any, Any]) -> MemberPrincipal:
    rt = runtime(request.app.state)
    now = rt.clock.now()
    token = tokens.bearer_token(request.headers.get("authorization"))
    claims = tokens.verify_member_token(token, secret=_secret(request), now=now)
    principal = await live_session(
        rt.db, claims.session_id, claims.member_public_id, "api", now=now
    )
    if principal is None:
        raise Unauthorized("the access token has been revoked", code="invalid_token")
    return principal


def set_session_cookie(
    response: Response[Any], request: Request[Any, Any, Any], token: str, max_age_seconds: int
) -> None:
    response.set_cookie(
        WALLET_SESSION_COOKIE,
        token,
        max_age=max_age_seconds,
        path="/",
        secure=cookie_secure(request.url.hostname),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response[Any]) -> None:
    response.delete_cookie(WALLET_SESSION_COOKIE, path="/")


def sign_in_location(next_path: str) -> str:
    return f"{SIGN_IN_PATH}?next={quote(next_path, safe='/')}"


def _sign_in_required(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    location = sign_in_location(exc.next_path)
    if request.headers.get("hx-request") == "true":
        # htmx would swap the sign-in page into a fragment; make it navigate instead.
        return Response("", status_code=200, headers={"HX-Redirect": location})
    response: Response[Any] = Redirect(location, status_code=303)
    # A cookie that no longer names a live session is of no use to keep.
    clear_session_cookie(response)
    return response


def _form_expired(request: Request[Any, Any, Any], _: FormExpired) -> Response[Any]:
    from api.member_auth.pages import message_page

    return message_page(
        "This form has expired",
        "Reload the page and send the form again.",
        status=403,
    )


def _retry_later(request: Request[Any, Any, Any], exc: RetryLater) -> Response[Any]:
    response = domain_error(request, exc)
    response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


# Registered on the app, so any wallet handler can raise these.
WALLET_EXCEPTION_HANDLERS: dict[Any, Any] = {
    SignInRequired: _sign_in_required,
    FormExpired: _form_expired,
    RetryLater: _retry_later,
}
