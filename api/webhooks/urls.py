"""Which URLs a partner may register as a webhook endpoint.

https everywhere; plain http only to this machine in development (a local
receiver while integrating). Credentials in a URL would be stored and logged
in clear, so they are refused. In production, addresses that name this
network (loopback, private, link-local) are refused too: Kring should not be
made to post into its own network. A host name that resolves there is not
caught here (that needs a check at connect time).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from api.errors import DomainError
from api.settings import Mode

WEBHOOK_URL_CHARS_MAX = 2000


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_internal(host: str) -> bool:
    if _is_loopback(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_link_local or address.is_unspecified


def validate_webhook_url(url: str, mode: Mode) -> str:
    """The URL as given, or a DomainError with a stable code saying what is wrong."""
    if len(url) > WEBHOOK_URL_CHARS_MAX:
        raise DomainError(
            f"the URL is longer than {WEBHOOK_URL_CHARS_MAX} characters",
            code="webhook_url_too_long",
        )
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise DomainError(
            "the URL must be ASCII without spaces (percent-encode the rest)",
            code="invalid_webhook_url",
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  # raises ValueError on a malformed port
    except ValueError:
        raise DomainError("the URL cannot be parsed", code="invalid_webhook_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise DomainError("the URL must be http(s)://host/...", code="invalid_webhook_url")
    if parts.username is not None or parts.password is not None:
        raise DomainError(
            "the URL must not carry credentials; authenticate deliveries by their signature",
            code="webhook_url_credentials",
        )
    if parts.scheme == "http" and not (mode == "development" and _is_loopback(host)):
        raise DomainError(
            "the URL must use https (http only to localhost in development)",
            code="webhook_url_not_https",
        )
    if mode == "production" and _is_internal(host):
        raise DomainError(
            "the URL must not point at a loopback, private or link-local address",
            code="webhook_url_internal",
        )
    return url
