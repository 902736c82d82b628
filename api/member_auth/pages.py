"""Rendering the sign-in pages and the development mailbox (pwa/templates/wallet/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Response

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "pwa" / "templates"
HTML = "text/html; charset=utf-8"

# Lenient undefined: wallet/base.html is shared with the wallet pages, which
# may pass it more than these pages know of.
_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, context: dict[str, Any]) -> str:
    return _env.get_template(template).render(context)


def html(body: str, *, status: int = 200) -> Response[str]:
    return Response(
        body,
        status_code=status,
        media_type=HTML,
        headers={"Cache-Control": "no-store"},
    )


def page(template: str, context: dict[str, Any], *, status: int = 200) -> Response[str]:
    return html(render(template, context), status=status)


def message_page(title: str, message: str, *, status: int = 200) -> Response[str]:
    return page("wallet/sign_in_message.html", {"title": title, "message": message}, status=status)
