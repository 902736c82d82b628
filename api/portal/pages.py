"""Rendering portal pages and the fragments htmx asks for, from pwa/templates/portal/."""

from __future__ import annotations

from datetime import datetime

from api.money import format_cents
from api.web.templates import Pages, as_sentence

HTMX_JS = "/static/vendor/htmx-2.0.11.min.js"
PORTAL_CSS = "/static/css/portal.css"
# The worker file must sit next to the scanner: the scanner imports "./qr-scanner-worker.min.js".
QR_SCANNER_JS = "/static/vendor/qr-scanner-1.4.2/qr-scanner.umd.min.js"
TILL_SCAN_JS = "/static/js/till-scan.js"


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%d %b %Y %H:%M")


def _card_tail(card_number: str) -> str:
    """The end of a card number: enough for staff to tell cards apart on a shared screen."""
    return "•••• " + card_number[-4:]


_pages = Pages(
    filters={
        "cents": format_cents,
        "when": _when,
        "card_tail": _card_tail,
        "sentence": as_sentence,
    },
    globals={
        "htmx_js": HTMX_JS,
        "portal_css": PORTAL_CSS,
        "qr_scanner_js": QR_SCANNER_JS,
        "till_scan_js": TILL_SCAN_JS,
    },
)
render = _pages.render
page = _pages.page
