"""Rendering the sign-in pages and the development mailbox (pwa/templates/wallet/)."""

from __future__ import annotations

from typing import Any

from litestar import Response

from api.web.templates import Pages, html

# Lenient undefined: wallet/base.html is shared with the wallet pages, which
# may pass it more than these pages know of.
_pages = Pages(strict=False)


def page(template: str, context: dict[str, Any], *, status: int = 200) -> Response[str]:
    return html(_pages.render(template, context), status=status)


def message_page(title: str, message: str, *, status: int = 200) -> Response[str]:
    return page("wallet/sign_in_message.html", {"title": title, "message": message}, status=status)
