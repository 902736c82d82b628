"""The rendered API reference at /schema: Redoc, vendored, with no inline script.

Litestar's `RedocRenderPlugin` writes the whole OpenAPI document into an inline
`<script>Redoc.init(…)</script>`, which a content security policy without
'unsafe-inline' for scripts refuses. This page instead loads a static script
(pwa/static/js/api-docs.js) that hands Redoc the document's URL, read from the
container's `data-spec-url`; Redoc fetches it (connect-src 'self').
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import RedocRenderPlugin

API_DOCS_JS = "/static/js/api-docs.js"
API_DOCS_CSS = "/static/css/api-docs.css"


class StaticRedocRenderPlugin(RedocRenderPlugin):
    def __init__(self, *, js_url: str, **kwargs: Any) -> None:
        super().__init__(
            js_url=js_url,
            google_fonts=False,
            # Litestar's default favicon is fetched from a CDN; no request at all instead.
            favicon="<link rel='icon' href='data:,'>",
            style=f"<link rel='stylesheet' href='{API_DOCS_CSS}'>",
            **kwargs,
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        spec_url = escape(self.get_openapi_json_route(request))
        return (
            "<!DOCTYPE html><html lang='en'><head>"
            f"<title>{title}</title>{self.favicon}"
            "<meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"{self.style}"
            f"<script src='{escape(self.js_url)}' defer></script>"
            f"<script src='{API_DOCS_JS}' defer></script>"
            "</head><body>"
            f"<div id='redoc-container' data-spec-url='{spec_url}'></div>"
            "</body></html>"
        ).encode()
