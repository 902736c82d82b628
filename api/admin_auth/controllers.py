"""HTTP handlers of the admin API's own routes: /admin/v1/token and /admin/v1/audit.

Thin: read the body or query, call `accounts` or `audit`, answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.params import JSONBody, QueryParameter

from api.admin_auth import accounts, audit, schemas
from api.admin_auth.guards import ADMIN_SECURITY, Admin, admin_principal, requires_roles
from api.admin_auth.tokens import ADMIN_TOKEN_TTL, issue_admin_token
from api.web.client_ip import client_ip
from api.web.state import runtime

_INVALID_CREDENTIALS = "`invalid_credentials` (401: any wrong e-mail, password or code)"


class AdminTokenController(Controller):
    path = "/admin/v1"
    tags = ["Admin API: authentication"]

    @post(
        "/token",
        summary="Sign in: password and a second factor for an access token",
        description=(
            "Send `email`, `password` and exactly one of `totp_code` (from the"
            " authenticator app; each code works once) or `recovery_code` (each works"
            " once). Returns a bearer token for /admin/v1, valid"
            f" {int(ADMIN_TOKEN_TTL.total_seconds() // 60)} minutes. Problems:"
            f" {_INVALID_CREDENTIALS}; `invalid_request` (422); `rate_limited` (429,"
            f" Retry-After: {accounts.SIGN_INS_PER_ADDRESS_MAX} attempts per address and"
            f" {accounts.SIGN_INS_PER_IP_MAX} per IP in"
            f" {int(accounts.SIGN_IN_WINDOW.total_seconds() // 60)} minutes)."
        ),
        status_code=200,
    )
    async def token(
        self, request: Request[Any, Any, Any], data: JSONBody[schemas.TokenRequest]
    ) -> schemas.AccessToken:
        rt = runtime(request.app.state)
        now = rt.clock.now()
        admin = await accounts.sign_in(
            rt.db,
            email=data.email,
            password=data.password,
            totp_code=data.totp_code,
            recovery_code=data.recovery_code,
            ip=client_ip(request),
            now=now,
        )
        token = issue_admin_token(admin.admin_id, secret=rt.settings.jwt_secret or "", now=now)
        return schemas.AccessToken(
            access_token=token,
            token_type="Bearer",
            expires_in=int(ADMIN_TOKEN_TTL.total_seconds()),
        )


class AuditController(Controller):
    path = "/admin/v1/audit"
    tags = ["Admin API: audit log"]
    dependencies = {"admin": Provide(admin_principal)}
    security = ADMIN_SECURITY
    guards = [requires_roles("owner")]

    @get(
        "",
        summary="The audit log, newest first (owner only)",
        description=(
            "Every change an admin made: who, when, what, before and after. Filter by"
            " `admin_id`, `action` and a time range (`since` inclusive, `until`"
            " exclusive); pass `next_cursor` back as `cursor`. Problems: `invalid_cursor`,"
            " `invalid_range` (400); `forbidden_role` (403)."
        ),
    )
    async def list_audit(
        self,
        request: Request[Any, Any, Any],
        admin: Admin,
        limit: Annotated[int, QueryParameter(ge=1, le=audit.PAGE_SIZE_MAX)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        admin_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        action: Annotated[str | None, QueryParameter(max_length=audit.ACTION_CHARS_MAX)] = None,
        since: Annotated[datetime | None, QueryParameter()] = None,
        until: Annotated[datetime | None, QueryParameter()] = None,
    ) -> schemas.AuditPageOut:
        page = await audit.list_entries(
            runtime(request.app.state).db,
            limit=limit,
            cursor=cursor,
            admin_id=admin_id,
            action=action,
            since=since,
            until=until,
        )
        return schemas.AuditPageOut(
            items=[
                schemas.AuditEntryOut(
                    id=e.id,
                    at=e.at,
                    admin_id=e.admin_id,
                    admin_email=e.admin_email,
                    admin_role=e.admin_role,
                    action=e.action,
                    subject=e.subject,
                    before=e.before,
                    after=e.after,
                )
                for e in page.items
            ],
            next_cursor=page.next_cursor,
        )


ADMIN_AUTH_HANDLERS: list[Any] = [AdminTokenController, AuditController]
