"""Server-rendered pages: the one way to render a template, whole or one of
its blocks (the fragment an htmx request swaps in).

Each surface (portal, wallet, sign-in) makes one `Pages` with its own filters
and globals; they share the templates folder, the escaping rules and the
response headers. Every page answers with `Vary: HX-Request`: the same URL is
a whole page for a browser and a fragment for htmx, and a cache (the
browser's, a service worker's) must keep the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined, select_autoescape
from litestar import Request, Response

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "pwa" / "templates"
HTML = "text/html; charset=utf-8"


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


class Pages:
    def __init__(
        self,
        *,
        filters: Mapping[str, Callable[..., Any]] | None = None,
        globals: Mapping[str, Any] | None = None,
        strict: bool = True,
    ) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True),
            # Strict: a misspelt name fails the test that renders it, not silently.
            undefined=StrictUndefined if strict else Undefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(filters or {})
        self.env.globals.update(globals or {})

    def render(self, template: str, context: dict[str, Any], *, block: str | None = None) -> str:
        """The whole page, or one of its blocks."""
        tmpl = self.env.get_template(template)
        if block is None:
            return tmpl.render(context)
        return "".join(tmpl.blocks[block](tmpl.new_context(context)))

    def page(
        self,
        request: Request[Any, Any, Any],
        template: str,
        context: dict[str, Any],
        *,
        fragment: str | None = None,
        status: int = 200,
        cache: str = "no-store",
    ) -> Response[str]:
        """Render `fragment` for htmx requests and the whole page otherwise."""
        block = fragment if fragment is not None and is_htmx(request) else None
        return html(self.render(template, context, block=block), status=status, cache=cache)


def html(body: str, *, status: int = 200, cache: str = "no-store") -> Response[str]:
    return Response(
        body,
        status_code=status,
        media_type=HTML,
        headers={"Cache-Control": cache, "Vary": "HX-Request"},
    )


def as_sentence(text: str) -> str:
    """A problem's detail as a page shows it: domain messages are written
    lower-case for API clients; people read sentences."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")
