"""Rendering back-office pages and the fragments htmx asks for, from pwa/templates/backoffice/."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from api.backoffice.guards import AdminSession
from api.backoffice.session import CSRF_HEADER
from api.money import format_cents
from api.web.templates import Pages, as_sentence

HTMX_JS = "/static/vendor/htmx-2.0.11.min.js"
BACKOFFICE_CSS = "/static/css/backoffice.css"
BACKOFFICE_JS = "/static/js/backoffice.js"
# Admins read times as the programme keeps its books: Amsterdam.
PROGRAMME_TZ = ZoneInfo("Europe/Amsterdam")


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(PROGRAMME_TZ).strftime("%d %b %Y %H:%M")


def _day(value: date | None) -> str:
    return "" if value is None else value.strftime("%d %b %Y")


def _points(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


_pages = Pages(
    filters={
        "cents": format_cents,
        "points": _points,
        "when": _when,
        "day": _day,
        "sentence": as_sentence,
    },
    globals={
        "htmx_js": HTMX_JS,
        "backoffice_css": BACKOFFICE_CSS,
        "backoffice_js": BACKOFFICE_JS,
        "csrf_header": CSRF_HEADER,
    },
)
render = _pages.render
page = _pages.page


# The navigation: (key, label, path). A link shows only to roles that its
# page's GET route allows (read from the routes themselves by the router).
NAV: tuple[tuple[str, str, str], ...] = (
    ("dashboard", "Dashboard", "/backoffice/dashboard"),
    ("members", "Members", "/backoffice/members"),
    ("adjustments", "Adjustments", "/backoffice/adjustments"),
    ("partners", "Partners", "/backoffice/partners"),
    ("settlement", "Settlement", "/backoffice/settlement"),
    ("challenges", "Challenges", "/backoffice/challenges"),
    ("lotteries", "Lotteries", "/backoffice/lotteries"),
    ("vip", "VIP", "/backoffice/vip"),
    ("charities", "Charities", "/backoffice/charities"),
    ("audit", "Audit log", "/backoffice/audit"),
)
_page_roles: dict[str, tuple[str, ...]] = {}


def register_page_roles(page_roles: dict[str, tuple[str, ...]]) -> None:
    """The router tells which roles may GET each path (for the navigation)."""
    _page_roles.clear()
    _page_roles.update(page_roles)


def nav_for(role: str) -> list[tuple[str, str, str]]:
    return [item for item in NAV if role in _page_roles.get(item[2], ())]


def base_context(who: AdminSession, nav: str) -> dict[str, Any]:
    """What base.html needs: who is signed in, their links, the CSRF token, the current nav item."""
    return {
        "signed_in": who.admin,
        "nav_items": nav_for(who.admin.role),
        "csrf_token": who.csrf_token,
        "nav": nav,
    }
