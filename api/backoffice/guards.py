"""Who is signed in to the back-office, and whether their role may use a route.

Every route states its roles in `opt`; one guard on the router enforces them,
so a route that forgets to say is refused to everyone rather than open:

    @get("/members", opt={"roles": SUPPORT_ROLES})
    async def members(request: Request, who: SignedInAdmin) -> Response[str]: ...

Anonymous requests are sent to the sign-in page; a signed-in admin whose role
is not listed gets a 403 page. Forms carry the session's CSRF token in a
hidden field, htmx requests in the X-CSRF-Token header (base.html sets it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from api.admin_auth.accounts import backoffice_session_admin
from api.admin_auth.principal import ROLES, AdminPrincipal, Role
from api.backoffice import session as sessions
from api.web.cookies import csrf_matches
from api.web.state import runtime

ALL_ROLES: tuple[Role, ...] = ROLES
OWNER: tuple[Role, ...] = ("owner",)
_STATE_KEY = "kring_backoffice_admin"


class SignInRequired(Exception):
    """No valid session: send the browser to the sign-in page."""


class RoleRefused(Exception):
    """A signed-in admin asked for something their role may not do."""

    def __init__(self, role: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{role} may not use this page")
        self.role = role
        self.allowed = allowed


class FormExpired(Exception):
    """The form's or request's CSRF token does not match the session's."""


@dataclass(frozen=True, slots=True)
class AdminSession:
    admin: AdminPrincipal
    csrf_token: str


SignedInAdmin = NamedDependency[AdminSession]


def session_secret(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return runtime(connection.app.state).settings.jwt_secret or ""


async def _session(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminSession:
    cached = connection.state.get(_STATE_KEY)
    if isinstance(cached, AdminSession):
        return cached
    rt = runtime(connection.app.state)
    claims = sessions.read_session(
        connection.cookies.get(sessions.SESSION_COOKIE),
        secret=session_secret(connection),
        now=rt.clock.now(),
    )
    if claims is None:
        raise SignInRequired
    admin = await backoffice_session_admin(rt.db, claims.admin_id, claims.generation)
    if admin is None:
        raise SignInRequired
    found = AdminSession(admin, claims.csrf_token)
    connection.state[_STATE_KEY] = found
    return found


def route_roles(handler: BaseRouteHandler) -> tuple[Role, ...]:
    """The roles a route allows; none when it does not say (fail closed)."""
    roles = handler.opt.get("roles", ())
    return tuple(role for role in roles if role in ROLES)


async def enforce_roles(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The router's guard: public routes pass, others need a listed role."""
    if handler.opt.get("public") is True:
        return
    who = await _session(connection)
    allowed = route_roles(handler)
    if who.admin.role not in allowed:
        raise RoleRefused(who.admin.role, allowed)


async def signed_in_admin(request: Request[Any, Any, Any]) -> AdminSession:
    return await _session(request)


def require_csrf(
    request: Request[Any, Any, Any], form: FormMultiDict | None, who: AdminSession
) -> None:
    """Refuse a change whose form field or htmx header lacks the session's token."""
    sent = request.headers.get(sessions.CSRF_HEADER)
    if not sent and form is not None:
        sent = form_text(form, sessions.CSRF_FIELD)
    if not csrf_matches(who.csrf_token, sent):
        raise FormExpired


def form_text(form: FormMultiDict, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""
