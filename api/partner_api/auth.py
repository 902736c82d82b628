"""Partner access tokens: client credentials in, a short-lived JWT out.

One algorithm (HS256) is pinned on both sides; audience, issuer and expiry
are always checked, so a token minted for another surface is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import jwt

from api.errors import Unauthorized

ALGORITHM = "HS256"
AUDIENCE = "kring:partner-api"
ISSUER = "kring"
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class PartnerPrincipal:
    partner_id: int
    public_id: UUID


def issue_token(
    principal: PartnerPrincipal, *, secret: str, now: datetime, ttl_seconds: int
) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(principal.public_id),
        "pid": principal.partner_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, *, secret: str, now: datetime) -> PartnerPrincipal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Time claims are checked below against Kring's clock, so tests can move time.
            options={
                "require": ["exp", "iat", "sub", "aud", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError:
        raise Unauthorized("the access token is invalid", code="invalid_token") from None
    if not isinstance(claims["exp"], int) or not isinstance(claims["iat"], int):
        raise Unauthorized("the access token is invalid", code="invalid_token")
    if claims["iat"] > now.timestamp() + CLOCK_SKEW_SECONDS:
        raise Unauthorized("the access token is not valid yet", code="invalid_token")
    if claims["exp"] <= now.timestamp():
        raise Unauthorized("the access token has expired", code="token_expired")
    try:
        return PartnerPrincipal(int(claims["pid"]), UUID(claims["sub"]))
    except (KeyError, ValueError, TypeError):
        raise Unauthorized("the access token is invalid", code="invalid_token") from None


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthorized(
            "send an access token: Authorization: Bearer <token>", code="missing_token"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'", code="invalid_token"
        )
    return token.strip()
