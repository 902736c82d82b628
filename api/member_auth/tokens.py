"""Signed values of member sign-in: the wallet session cookie, member API
access tokens, and the short-lived ticket that carries an address from the
e-mail form to the code form.

All are JWTs, HS256 with `settings.jwt_secret`, issuer `kring` like the
partner and portal tokens, and each with its own audience, so a value minted
for one surface is refused by every other. Expiry is checked against Kring's
clock, so tests can move time. A session or token names a `member_sessions`
row (`sid`), which must still be live: see `sessions.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import jwt

from api.errors import Unauthorized

ALGORITHM = "HS256"
ISSUER = "kring"
WALLET_AUDIENCE = "kring:wallet"
MEMBER_API_AUDIENCE = "kring:member"
TICKET_AUDIENCE = "kring:wallet-sign-in"
WALLET_SESSION_TTL = timedelta(days=30)
MEMBER_TOKEN_TTL = timedelta(hours=1)
# Long enough to read the mail and type the code (the code itself lives 10 minutes).
TICKET_TTL = timedelta(minutes=30)
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class SessionClaims:
    session_id: UUID
    member_public_id: UUID
    expires_at: int  # unix seconds


def _encode(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode({"iss": ISSUER, **claims}, secret, algorithm=ALGORITHM)


def _decode(token: str, *, secret: str, audience: str, now: datetime) -> dict[str, Any] | None:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "sub", "aud", "iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError:
        return None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        return None
    if iat > now.timestamp() + CLOCK_SKEW_SECONDS or exp <= now.timestamp():
        return None
    return claims


def issue_session_token(
    session_id: UUID,
    member_public_id: UUID,
    *,
    audience: str,
    secret: str,
    now: datetime,
    expires_at: datetime,
) -> str:
    return _encode(
        {
            "aud": audience,
            "sub": str(member_public_id),
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        },
        secret,
    )


def read_session_token(
    token: str | None, *, audience: str, secret: str, now: datetime
) -> SessionClaims | None:
    """The claims of a valid, unexpired session or access token, else None."""
    if not token:
        return None
    claims = _decode(token, secret=secret, audience=audience, now=now)
    if claims is None:
        return None
    try:
        return SessionClaims(UUID(str(claims["sid"])), UUID(str(claims["sub"])), claims["exp"])
    except (KeyError, ValueError, TypeError):
        return None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token_for(session_id: UUID, *, secret: str) -> str:
    """The CSRF token of a wallet session: derived, so nothing more is stored."""
    return hmac.new(secret.encode(), b"wallet-csrf:" + session_id.bytes, hashlib.sha256).hexdigest()


def constant_time_equal(expected: str | None, sent: str | None) -> bool:
    if not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


@dataclass(frozen=True, slots=True)
class Ticket:
    email: str
    next_path: str


def issue_ticket(email: str, next_path: str, *, secret: str, now: datetime) -> str:
    return _encode(
        {
            "aud": TICKET_AUDIENCE,
            "sub": email,
            "next": next_path,
            "iat": int(now.timestamp()),
            "exp": int((now + TICKET_TTL).timestamp()),
        },
        secret,
    )


def read_ticket(token: str | None, *, secret: str, now: datetime) -> Ticket | None:
    if not token:
        return None
    claims = _decode(token, secret=secret, audience=TICKET_AUDIENCE, now=now)
    if claims is None or not isinstance(claims.get("next", "/"), str):
        return None
    return Ticket(str(claims["sub"]), str(claims.get("next", "/")))


def verify_member_token(token: str, *, secret: str, now: datetime) -> SessionClaims:
    """A member API access token's claims, or `Unauthorized` with a stable code."""

    claims = read_session_token(token, audience=MEMBER_API_AUDIENCE, secret=secret, now=now)
    if claims is not None:
        return claims
    # Tell an expired token apart from a bad one: the client refreshes the first.
    try:
        unverified = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=MEMBER_API_AUDIENCE,
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidTokenError:
        unverified = {}
    exp = unverified.get("exp")
    if isinstance(exp, int) and exp <= now.timestamp():
        raise Unauthorized("the access token has expired", code="token_expired")
    raise Unauthorized("the access token is invalid", code="invalid_token")


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
