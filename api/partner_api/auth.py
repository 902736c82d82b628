"""Partner access tokens: client credentials in, a short-lived JWT out.

One algorithm (HS256) is pinned on both sides; audience, issuer and expiry
are always checked, so a token minted for another surface is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from api import signed_tokens
from api.errors import Unauthorized
from api.member_auth.rate_limits import Limit

AUDIENCE = "kring:partner-api"
# Token requests, counted in PostgreSQL so that every API process shares them.
# A POS renews its token every TTL (15 minutes); a fleet of tills sharing one
# client needs far fewer than one a second. Per IP, more: several partners'
# tills may sit behind one address.
TOKEN_REQUESTS_PER_CLIENT_MAX = 60  # per TOKEN_REQUEST_WINDOW
TOKEN_REQUESTS_PER_IP_MAX = 300  # per TOKEN_REQUEST_WINDOW, across all clients
TOKEN_REQUEST_WINDOW = timedelta(minutes=1)
TOKEN_REQUESTS_PER_CLIENT = Limit(
    "partner-token:client", TOKEN_REQUESTS_PER_CLIENT_MAX, TOKEN_REQUEST_WINDOW
)
TOKEN_REQUESTS_PER_IP = Limit("partner-token:ip", TOKEN_REQUESTS_PER_IP_MAX, TOKEN_REQUEST_WINDOW)


@dataclass(frozen=True, slots=True)
class PartnerPrincipal:
    partner_id: int
    public_id: UUID


def issue_token(
    principal: PartnerPrincipal, *, secret: str, now: datetime, ttl_seconds: int
) -> str:
    return signed_tokens.mint(
        {"sub": str(principal.public_id), "pid": principal.partner_id},
        audience=AUDIENCE,
        secret=secret,
        now=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )


_REJECTED: dict[signed_tokens.Reason, tuple[str, str]] = {
    "invalid": ("the access token is invalid", "invalid_token"),
    "not_yet_valid": ("the access token is not valid yet", "invalid_token"),
    "expired": ("the access token has expired", "token_expired"),
}


def verify_token(token: str, *, secret: str, now: datetime) -> PartnerPrincipal:
    try:
        claims = signed_tokens.read(
            token, audience=AUDIENCE, secret=secret, now=now, require=("sub", "pid")
        )
        return PartnerPrincipal(int(claims["pid"]), UUID(claims["sub"]))
    except signed_tokens.TokenRejected as rejected:
        detail, code = _REJECTED[rejected.reason]
        raise Unauthorized(detail, code=code) from None
    except (KeyError, ValueError, TypeError):
        raise Unauthorized("the access token is invalid", code="invalid_token") from None


# One parser of `Authorization: Bearer …` for every API surface.
bearer_token = signed_tokens.bearer_token
