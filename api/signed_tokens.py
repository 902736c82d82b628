"""Kring's signed tokens: every JWT Kring mints and reads goes through here.

One algorithm (HS256) is pinned on both sides, with `settings.jwt_secret`.
Issuer `kring` always, and each surface has its own audience (partner API,
portal session, wallet session, member API, sign-in ticket), so a token
minted for one is refused by every other. Time claims are checked against
Kring's clock rather than the system's, so tests can move time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import jwt

from api.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "kring"
CLOCK_SKEW_SECONDS = 60  # an `iat` this far ahead of Kring's clock is still accepted

Reason = Literal["invalid", "expired", "not_yet_valid"]


class TokenRejected(Exception):
    """Why a token was refused; each surface turns it into its own answer."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


def mint(
    claims: dict[str, Any], *, audience: str, secret: str, now: datetime, expires_at: datetime
) -> str:
    return jwt.encode(
        {
            **claims,
            "iss": ISSUER,
            "aud": audience,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        },
        secret,
        algorithm=ALGORITHM,
    )


def read(
    token: str, *, audience: str, secret: str, now: datetime, require: tuple[str, ...] = ("sub",)
) -> dict[str, Any]:
    """The claims of a token signed by Kring for `audience`, valid at `now`;
    `TokenRejected` otherwise."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "aud", "iss", *require],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError:
        raise TokenRejected("invalid") from None
    issued, expires = claims["iat"], claims["exp"]
    if type(issued) is not int or type(expires) is not int:
        raise TokenRejected("invalid")
    if issued > now.timestamp() + CLOCK_SKEW_SECONDS:
        raise TokenRejected("not_yet_valid")
    if expires <= now.timestamp():
        raise TokenRejected("expired")
    return claims


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or `Unauthorized`."""
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
