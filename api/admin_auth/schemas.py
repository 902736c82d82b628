"""Request and response bodies of /admin/v1/token and /admin/v1/audit."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from api.admin_auth.accounts import CODE_CHARS_MAX, EMAIL_CHARS_MAX
from api.portal.passwords import PASSWORD_LENGTH_MAX


class TokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(max_length=EMAIL_CHARS_MAX)]
    password: Annotated[str, msgspec.Meta(max_length=PASSWORD_LENGTH_MAX)]
    totp_code: Annotated[str, msgspec.Meta(max_length=CODE_CHARS_MAX)] | None = None
    recovery_code: Annotated[str, msgspec.Meta(max_length=CODE_CHARS_MAX)] | None = None


class AccessToken(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int


class AuditEntryOut(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    admin_id: int
    admin_email: str
    admin_role: str
    action: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPageOut(msgspec.Struct, kw_only=True):
    items: list[AuditEntryOut]
    next_cursor: str | None
