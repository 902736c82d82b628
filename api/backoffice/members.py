"""Back-office pages: members (search, profile, ledger, block, export, erasure)
and manual adjustments with maker-checker."""

from __future__ import annotations

from typing import Any

from api.backoffice import adjustment_pages, member_pages

HANDLERS: list[Any] = [*member_pages.HANDLERS, *adjustment_pages.HANDLERS]
