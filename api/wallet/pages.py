"""Rendering wallet pages and the fragments htmx asks for, from pwa/templates/wallet/
(through api/web/templates.py, with the wallet's filters)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request, Response

from api.coalition.member_views import MEMBER_TIME_ZONE
from api.member_auth.guards import INBOX_UNREAD_STATE_KEY
from api.money import format_cents
from api.web.templates import Pages

_ZONE = ZoneInfo(MEMBER_TIME_ZONE)


def format_points(points: int) -> str:
    """1234567 -> "1.234.567" (the wallet's locale groups thousands with dots)."""
    sign = "-" if points < 0 else ""
    return sign + f"{abs(points):,}".replace(",", ".")


def format_day(value: date | datetime | None) -> str:
    """A calendar day as members read it: "2 Mar 2026" (Amsterdam time for moments)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(_ZONE).date()
    return f"{value.day} {value:%b %Y}"


def format_moment(value: datetime | None) -> str:
    if value is None:
        return ""
    local = value.astimezone(_ZONE)
    return f"{local.day} {local:%b %Y, %H:%M}"


_pages = Pages(
    filters={
        "points": format_points,
        "cents": format_cents,
        "day": format_day,
        "moment": format_moment,
    }
)
render = _pages.render


def page(
    request: Request[Any, Any, Any], template: str, context: dict[str, Any], **options: Any
) -> Response[str]:
    """`Pages.page`, with the signed-in member's unread inbox count for the nav
    badge (looked up with the wallet session; a handler may pass a fresher one)."""
    unread = request.state.get(INBOX_UNREAD_STATE_KEY)
    if unread is not None:
        context = {"inbox_unread": unread, **context}
    return _pages.page(request, template, context, **options)
