"""Reading the inbox in headless Chromium at a phone's size: the nav's badge
counts the unread messages on every page, opening a message reads it (the
badge goes down), the message addresses the member by their salutation, and
axe-core finds no serious or critical accessibility violations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from playwright.async_api import Browser, expect

from api.clock import ManualClock
from api.db.pool import transaction
from api.engagement import inbox
from api.settings import Settings
from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.test_wallet import axe_violations, serving, signed_in_context


async def test_a_member_reads_their_inbox(
    browser: Browser,
    app: Any,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    card = await make_member(display_name="Jet Jansen")
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    await pool.execute("UPDATE members SET salutation = 'Ms Jansen' WHERE id = $1", member_id)
    now = clock.now()

    async def write(conn: asyncpg.Connection) -> None:
        await inbox.post(conn, member_id, "tier_up", {"tier": "Silver"}, now)
        await inbox.post(
            conn,
            member_id,
            "lottery_won",
            {"lottery": "Spring draw", "prize": "Cinema for two"},
            now,
            "browser-test:won",
        )

    await transaction(pool, write)

    async with serving(app) as (base_url, _server):
        context = await signed_in_context(browser, base_url, pool, clock, settings, card)
        page = await context.new_page()
        tabs = page.get_by_role("navigation", name="Wallet")

        await page.goto("/")
        await expect(tabs.locator(".badge")).to_have_text("2")
        await expect(tabs.get_by_role("link", name="Inbox (2 unread)")).to_be_visible()
        assert await axe_violations(page) == []

        await tabs.get_by_role("link", name="Inbox (2 unread)").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
        items = page.locator("#inbox-list .item")
        await expect(items).to_have_count(2)
        await expect(items.first).to_contain_text("You won in Spring draw!")  # newest first
        await expect(page.locator("#inbox-list .item.unread")).to_have_count(2)
        await screenshot(page, "wallet-phone-inbox")
        assert await axe_violations(page) == []

        await page.get_by_role("link", name="You won in Spring draw!").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("You won in Spring draw!")
        await expect(page.get_by_text("Hello Ms Jansen,")).to_be_visible()
        await expect(page.get_by_text("Your ticket won Cinema for two")).to_be_visible()
        await expect(tabs.locator(".badge")).to_have_text("1")
        await screenshot(page, "wallet-phone-inbox-message")
        assert await axe_violations(page) == []

        await page.get_by_role("link", name="← Inbox").click()
        await expect(page.locator("#inbox-list .item.unread")).to_have_count(1)
        await expect(page.locator("#inbox-list .item.unread")).to_contain_text("Welcome to Silver")
        await expect(tabs.locator(".badge")).to_have_text("1")

        await page.get_by_role("button", name="Mark all as read").click()
        await expect(page.locator("#inbox-list .item.unread")).to_have_count(0)
        await expect(tabs.locator(".badge")).to_have_count(0)
        await expect(tabs.get_by_role("link", name="Inbox", exact=True)).to_be_visible()
        assert await inbox.unread_count(pool, member_id) == 0
        await context.close()
