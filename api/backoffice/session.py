"""The back-office session cookie, and the sign-in form's CSRF cookie.

The session is a JWT (HS256, `settings.jwt_secret`, audience
`kring:backoffice`) in an HttpOnly, SameSite=Strict cookie scoped to
/backoffice, Secure unless the host is loopback. It carries the admin id and a
random per-session CSRF token that every form post and htmx request must send
back, and the admin's session generation. It lasts a working day at most;
every request re-reads the admin's row, so a disabled admin or a role change
takes effect at once, and signing out moves the generation on, which ends
every session issued before (a copied cookie included).

Before sign-in there is no session: the sign-in form uses a double-submit
token, a random value in a short-lived Strict cookie and in the form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from api import signed_tokens
from api.web.cookies import new_csrf_token

AUDIENCE = "kring:backoffice"
PATH = "/backoffice"
SESSION_COOKIE = "kring_backoffice"
SIGN_IN_CSRF_COOKIE = "kring_backoffice_csrf"
SESSION_TTL = timedelta(hours=8)
SIGN_IN_CSRF_TTL = timedelta(hours=1)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class SessionClaims:
    admin_id: int
    generation: int
    csrf_token: str


def issue_session(admin_id: int, generation: int, *, secret: str, now: datetime) -> str:
    return signed_tokens.mint(
        {"sub": str(admin_id), "gen": generation, "csrf": new_csrf_token()},
        audience=AUDIENCE,
        secret=secret,
        now=now,
        expires_at=now + SESSION_TTL,
    )


def read_session(token: str | None, *, secret: str, now: datetime) -> SessionClaims | None:
    """The session in the cookie, or None if there is none or it is not valid now."""
    if not token:
        return None
    try:
        claims = signed_tokens.read(
            token, audience=AUDIENCE, secret=secret, now=now, require=("sub", "gen", "csrf")
        )
        generation = claims["gen"]
        if type(generation) is not int:
            return None
        return SessionClaims(
            admin_id=int(claims["sub"]), generation=generation, csrf_token=str(claims["csrf"])
        )
    except (signed_tokens.TokenRejected, ValueError, TypeError):
        return None
