"""Who is asking: the address that rate limits count per IP."""

from __future__ import annotations

from typing import Any

from litestar import Request


def client_ip(request: Request[Any, Any, Any]) -> str:
    # The direct peer: a proxy in front must be trusted explicitly before its
    # X-Forwarded-For may replace this, which Kring does not do (yet).
    return request.client.host if request.client else "unknown"
