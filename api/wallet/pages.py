"""Rendering wallet pages and the fragments htmx asks for, from pwa/templates/wallet/.

Every page answers with `Vary: HX-Request`: the same URL is a whole page for
a browser and a fragment for htmx, and a cache (the browser's, the service
worker's) must keep them apart.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response

from api.coalition.member_views import MEMBER_TIME_ZONE
from api.portal.forms import format_cents

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "pwa" / "templates"
HTML = "text/html; charset=utf-8"
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


_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(points=format_points, cents=format_cents, day=format_day, moment=format_moment)


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
    cache: str = "no-store",
) -> Response[str]:
    """Render `fragment` for htmx requests and the whole page otherwise."""
    block = fragment if fragment is not None and is_htmx(request) else None
    return Response(
        render(template, context, block=block),
        status_code=status,
        media_type=HTML,
        headers={"Cache-Control": cache, "Vary": "HX-Request"},
    )
