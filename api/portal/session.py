"""The portal's session cookie and CSRF tokens.

The session is a JWT (HS256, `settings.jwt_secret`, audience `kring:portal`)
in an HttpOnly, SameSite=Lax cookie, Secure unless the host is loopback. It
carries the staff id and a random per-session CSRF token; every form post
sends that token in a hidden field and is refused unless it matches the
session's (SameSite=Lax alone leaves same-site subdomains able to post).
Before sign-in there is no session, so the sign-in form uses a double-submit
token: a random value in a short-lived Strict cookie and in the form.

Sessions are stateless: signing out deletes the cookie, and every request
re-reads the staff row, so a disabled account stops working at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from api import signed_tokens
from api.web.cookies import new_csrf_token

AUDIENCE = "kring:portal"
SESSION_COOKIE = "kring_portal"
SIGN_IN_CSRF_COOKIE = "kring_portal_csrf"
SESSION_TTL = timedelta(hours=8)
SIGN_IN_CSRF_TTL = timedelta(hours=1)
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True, slots=True)
class PortalSession:
    staff_id: int
    csrf_token: str


def issue_session(staff_id: int, *, secret: str, now: datetime) -> str:
    return signed_tokens.mint(
        {"sub": str(staff_id), "csrf": new_csrf_token()},
        audience=AUDIENCE,
        secret=secret,
        now=now,
        expires_at=now + SESSION_TTL,
    )


def read_session(token: str | None, *, secret: str, now: datetime) -> PortalSession | None:
    """The session in the cookie, or None if there is none or it is not valid now."""
    if not token:
        return None
    try:
        claims = signed_tokens.read(
            token, audience=AUDIENCE, secret=secret, now=now, require=("sub", "csrf")
        )
        return PortalSession(staff_id=int(claims["sub"]), csrf_token=str(claims["csrf"]))
    except (signed_tokens.TokenRejected, ValueError, TypeError):
        return None
