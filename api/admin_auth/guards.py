"""Who is calling the admin API, and whether their role may use a route.

- `admin_principal`: a Litestar dependency. `Authorization: Bearer` with an
  admin access token (POST /admin/v1/token, audience `kring:admin`); the
  admin's row is read again on every call, so a disabled admin is refused at
  once and a role change applies at once. 401 problem+json otherwise:
  `missing_token`, `invalid_token`, `token_expired`, `admin_disabled`.
- `requires_roles(*roles)`: a Litestar guard; 401 as above without a valid
  token, 403 `forbidden_role` when the admin's role is not one of `roles`.
  It shares the principal with `admin_principal` (looked up once a request).
- `require_role(admin, *roles)`: the same check for a handler to call itself.

    @post(
        "/tiers",
        guards=[requires_roles("owner", "marketing")],
        dependencies={"admin": Provide(admin_principal)},
        security=ADMIN_SECURITY,
    )
    async def create_tier(admin: Admin, data: NewTier) -> TierOut: ...

Controllers usually set `dependencies`, `security` and `guards` once on the
Controller class, and narrow `guards` on a route that needs fewer roles.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.admin_auth.accounts import active_admin
from api.admin_auth.principal import ROLES, AdminPrincipal, Role
from api.admin_auth.tokens import read_admin_token
from api.errors import Forbidden, Unauthorized
from api.signed_tokens import bearer_token
from api.web.state import runtime

# Handler parameter type: `admin: Admin` with Provide(admin_principal).
Admin = NamedDependency[AdminPrincipal]
# The OpenAPI security requirement of every authenticated admin route.
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminBearer": []}]
_STATE_KEY = "kring_admin_principal"


async def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> AdminPrincipal:
    cached = connection.state.get(_STATE_KEY)
    if isinstance(cached, AdminPrincipal):
        return cached
    rt = runtime(connection.app.state)
    now = rt.clock.now()
    token = bearer_token(connection.headers.get("authorization"))
    admin_id = read_admin_token(token, secret=rt.settings.jwt_secret or "", now=now)
    principal = await active_admin(rt.db, admin_id)
    if principal is None:
        raise Unauthorized("this admin account is disabled", code="admin_disabled")
    connection.state[_STATE_KEY] = principal
    return principal


async def admin_principal(request: Request[Any, Any, Any]) -> AdminPrincipal:
    return await _principal(request)


def require_role(admin: AdminPrincipal, *roles: Role) -> None:
    """Refuse (403 `forbidden_role`) an admin whose role is not one of `roles`."""
    if admin.role not in roles:
        raise Forbidden(
            f"this needs the role {' or '.join(roles)}; you are {admin.role}",
            code="forbidden_role",
        )


def requires_roles(*roles: Role) -> Guard:
    """A guard that lets only admins with one of `roles` through."""
    unknown = [role for role in roles if role not in ROLES]
    if not roles or unknown:
        raise ValueError(f"requires_roles needs roles from {ROLES}, got {roles}")

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        require_role(await _principal(connection), *roles)

    return guard
