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
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from api import signed_tokens
from api.errors import Unauthorized

WALLET_AUDIENCE = "kring:wallet"
MEMBER_API_AUDIENCE = "kring:member"
TICKET_AUDIENCE = "kring:wallet-sign-in"
WALLET_SESSION_TTL = timedelta(days=30)
MEMBER_TOKEN_TTL = timedelta(hours=1)
# Long enough to read the mail and type the code (the code itself lives 10 minutes).
TICKET_TTL = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class SessionClaims:
    session_id: UUID
    member_public_id: UUID
    expires_at: int  # unix seconds


def issue_session_token(
    session_id: UUID,
    member_public_id: UUID,
    *,
    audience: str,
    secret: str,
    now: datetime,
    expires_at: datetime,
) -> str:
    return signed_tokens.mint(
        {"sub": str(member_public_id), "sid": str(session_id)},
        audience=audience,
        secret=secret,
        now=now,
        expires_at=expires_at,
    )


def read_session_token(
    token: str | None, *, audience: str, secret: str, now: datetime
) -> SessionClaims | None:
    """The claims of a valid, unexpired session or access token, else None."""
    if not token:
        return None
    try:
        return _session_claims(token, audience=audience, secret=secret, now=now)
    except signed_tokens.TokenRejected:
        return None


def _session_claims(token: str, *, audience: str, secret: str, now: datetime) -> SessionClaims:
    claims = signed_tokens.read(
        token, audience=audience, secret=secret, now=now, require=("sub", "sid")
    )
    try:
        return SessionClaims(UUID(str(claims["sid"])), UUID(str(claims["sub"])), claims["exp"])
    except (ValueError, TypeError):
        raise signed_tokens.TokenRejected("invalid") from None


def csrf_token_for(session_id: UUID, *, secret: str) -> str:
    """The CSRF token of a wallet session: derived, so nothing more is stored."""
    return hmac.new(secret.encode(), b"wallet-csrf:" + session_id.bytes, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Ticket:
    email: str
    next_path: str


def issue_ticket(email: str, next_path: str, *, secret: str, now: datetime) -> str:
    return signed_tokens.mint(
        {"sub": email, "next": next_path},
        audience=TICKET_AUDIENCE,
        secret=secret,
        now=now,
        expires_at=now + TICKET_TTL,
    )


def read_ticket(token: str | None, *, secret: str, now: datetime) -> Ticket | None:
    if not token:
        return None
    try:
        claims = signed_tokens.read(token, audience=TICKET_AUDIENCE, secret=secret, now=now)
    except signed_tokens.TokenRejected:
        return None
    if not isinstance(claims.get("next", "/"), str):
        return None
    return Ticket(str(claims["sub"]), str(claims.get("next", "/")))


def verify_member_token(token: str, *, secret: str, now: datetime) -> SessionClaims:
    """A member API access token's claims, or `Unauthorized` with a stable code:
    `token_expired` (the client gets a new one) apart from `invalid_token`."""
    try:
        return _session_claims(token, audience=MEMBER_API_AUDIENCE, secret=secret, now=now)
    except signed_tokens.TokenRejected as rejected:
        if rejected.reason == "expired":
            raise Unauthorized("the access token has expired", code="token_expired") from None
        raise Unauthorized("the access token is invalid", code="invalid_token") from None


# One parser of `Authorization: Bearer …` for every API surface.
bearer_token = signed_tokens.bearer_token
