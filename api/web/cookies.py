"""What every cookie-signed-in surface (wallet, portal, back-office) shares:
CSRF tokens, comparing them, and whether a cookie must be Secure."""

from __future__ import annotations

import hmac
import secrets

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, sent: str | None) -> bool:
    """Constant time; an empty token on either side never matches."""
    if not expected or not sent:
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def cookie_secure(host: str | None) -> bool:
    """Secure cookies everywhere but loopback, where development runs over plain HTTP."""
    return (host or "") not in _LOOPBACK_HOSTS
