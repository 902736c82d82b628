"""Rendering portal pages and the fragments htmx asks for, from pwa/templates/portal/."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response

from api.portal.forms import format_cents

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "pwa" / "templates"
HTMX_JS = "/static/vendor/htmx-2.0.11.min.js"
PORTAL_CSS = "/static/css/portal.css"
# The worker file must sit next to the scanner: the scanner imports "./qr-scanner-worker.min.js".
QR_SCANNER_JS = "/static/vendor/qr-scanner-1.4.2/qr-scanner.umd.min.js"
TILL_SCAN_JS = "/static/js/till-scan.js"
HTML = "text/html; charset=utf-8"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%d %b %Y %H:%M")


def _card_tail(card_number: str) -> str:
    """The end of a card number: enough for staff to tell cards apart on a shared screen."""
    return "•••• " + card_number[-4:]


def _sentence(text: str) -> str:
    """Service messages are written lower-case for API clients; staff read sentences."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(cents=format_cents, when=_when, card_tail=_card_tail, sentence=_sentence)
_env.globals.update(
    htmx_js=HTMX_JS, portal_css=PORTAL_CSS, qr_scanner_js=QR_SCANNER_JS, till_scan_js=TILL_SCAN_JS
)


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def render(template: str, context: dict[str, Any], *, block: str | None = None) -> str:
    """The whole page, or one of its blocks (the fragment an htmx request swaps in)."""
    tmpl = _env.get_template(template)
    if block is None:
        return tmpl.render(context)
    return "".join(tmpl.blocks[block](tmpl.new_context(context)))


def page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any],
    *,
    fragment: str | None = None,
    status: int = 200,
) -> Response[str]:
    """Render `fragment` for htmx requests and the whole page otherwise."""
    block = fragment if fragment is not None and is_htmx(request) else None
    return Response(
        render(template, context, block=block),
        status_code=status,
        media_type=HTML,
        headers={"Cache-Control": "no-store", "Vary": "HX-Request"},
    )
