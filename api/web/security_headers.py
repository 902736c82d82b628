"""Security headers on every response the app sends, whatever answered it
(a handler, a static file, a 404 from the router, a 413 from the body limit).

`add_security_headers` is a `before_send` hook: Litestar calls it for every
ASGI message, after routing and exception handling, so no response escapes it.

The content security policy depends on what the response is:

- HTML pages (wallet, portal, sign-in, sandbox checkout) and JavaScript (the
  service worker's own policy comes from its script's response): `PAGE_CSP`,
  no 'unsafe-inline' anywhere. Charity logos are https URLs on other hosts,
  hence `img-src https:`; the till's qr-scanner decodes in a worker made from
  a blob: URL, hence `worker-src blob:`.
- The API reference at /schema: `API_DOCS_CSP`, the one exception. Redoc
  (styled-components) writes its styles into <style> elements at run time, so
  that page allows inline *styles* (never inline scripts: its init script is
  a static file, api/web/api_docs.py). It shows no member data.
- Anything else (JSON, problem+json, CSV, images, CSS): `NON_HTML_CSP`, which
  forbids everything, should a browser ever render it as a document.

Referrer-Policy is `strict-origin-when-cross-origin`: no page puts a token in
its URL (sessions are cookies, card tokens are POSTed or shown in the page),
so other sites learn at most our origin; same-origin requests keep the full
referrer. HSTS is sent only over TLS: over plain HTTP it is ignored by
browsers and would be wrong for loopback development.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope

MOLLIE_CHECKOUT_ORIGIN = "https://www.mollie.com"
PAGE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        # The VIP forms post here and are answered with a 303 to the payment
        # checkout; Chromium applies form-action to that redirect. The sandbox
        # checkout is same-origin; Mollie's is on www.mollie.com.
        f"form-action 'self' {MOLLIE_CHECKOUT_ORIGIN}",
        "object-src 'none'",
    ]
)
API_DOCS_CSP = PAGE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'"
API_DOCS_PATH = "/schema"
HSTS = "max-age=31536000; includeSubDomains"

# Sent on every response, whatever its content.
_ALWAYS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("X-Frame-Options", "DENY"),
    # The portal's till scans member cards with the device camera.
    ("Permissions-Policy", "camera=(self), geolocation=(), microphone=()"),
)


def content_security_policy(path: str, content_type: str) -> str:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/html":
        is_docs = path == API_DOCS_PATH or path.startswith(API_DOCS_PATH + "/")
        return API_DOCS_CSP if is_docs else PAGE_CSP
    if kind in ("text/javascript", "application/javascript"):
        return PAGE_CSP
    return NON_HTML_CSP


async def add_security_headers(message: Message, scope: Scope) -> None:
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in _ALWAYS:
        headers[name] = value
    csp = content_security_policy(scope.get("path", ""), headers.get("content-type") or "")
    headers["Content-Security-Policy"] = csp
    if scope.get("scheme") == "https":
        headers["Strict-Transport-Security"] = HSTS
