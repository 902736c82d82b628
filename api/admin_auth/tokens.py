"""Admin API access tokens: a JWT for audience `kring:admin`, valid 15 minutes.

The token names the admin (`sub`) and nothing else that matters: the guard
re-reads the admin's row on every call, so a role change or a disabled
account takes effect at once rather than when the token runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from api import signed_tokens
from api.errors import Unauthorized

ADMIN_AUDIENCE = "kring:admin"
ADMIN_TOKEN_TTL = timedelta(minutes=15)


def issue_admin_token(admin_id: int, *, secret: str, now: datetime) -> str:
    return signed_tokens.mint(
        {"sub": str(admin_id)},
        audience=ADMIN_AUDIENCE,
        secret=secret,
        now=now,
        expires_at=now + ADMIN_TOKEN_TTL,
    )


def read_admin_token(token: str, *, secret: str, now: datetime) -> int:
    """The admin id a token names; 401 `invalid_token` or `token_expired` otherwise."""
    try:
        claims = signed_tokens.read(token, audience=ADMIN_AUDIENCE, secret=secret, now=now)
    except signed_tokens.TokenRejected as rejected:
        if rejected.reason == "expired":
            raise Unauthorized(
                "the access token has expired: ask for a new one", code="token_expired"
            ) from None
        raise Unauthorized("the access token is not valid", code="invalid_token") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isdigit():
        raise Unauthorized("the access token is not valid", code="invalid_token")
    return int(subject)
