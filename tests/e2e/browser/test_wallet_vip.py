"""VIP in headless Chromium at a phone's size: the member opens /vip from
the wallet home, sees the plans with what they would have added, subscribes,
pays on the sandbox checkout (Pay), comes back to /vip as a VIP, sees the VIP
badge on the home page, and the next partner earn shows the multiplier on the
transaction. axe-core finds no serious or critical violations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
from playwright.async_api import Browser, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.settings import Settings
from partners.client import PartnerClient
from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.test_wallet import axe_violations, serving, signed_in_context


async def test_subscribe_through_the_sandbox_then_a_multiplied_earn(
    browser: Browser,
    app: Any,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    card = await make_member(display_name="Vera Vip")
    shop = await make_partner(code="vip-bakery", name="VIP Bakery")
    await client_for(shop).earn(card, 10_000, "EUR", idempotency_key="vip-browser-before")
    clock.advance(timedelta(minutes=1))

    async with serving(app) as (base_url, _server):
        context = await signed_in_context(browser, base_url, pool, clock, settings, card)
        page = await context.new_page()
        await page.goto("/")
        await expect(page.get_by_test_id("vip-badge")).to_have_count(0)
        await page.get_by_role("link", name="See VIP").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("VIP")
        monthly = page.get_by_test_id("vip-plan").filter(has_text="VIP Monthly")
        await expect(monthly.get_by_test_id("would-have-earned")).to_contain_text("50 extra points")
        assert await axe_violations(page) == []
        await screenshot(page, "wallet-phone-vip-plans")

        await monthly.get_by_role("button", name=re.compile("Become VIP")).click()
        await expect(page.get_by_role("heading", name="Sandbox checkout")).to_be_visible()
        await page.get_by_role("button", name="Pay", exact=True).click()
        await expect(page).to_have_url(re.compile(r"/vip$"))
        status = page.get_by_test_id("vip-status")
        await expect(status.get_by_test_id("vip-badge")).to_be_visible()
        await expect(status).to_contain_text("Renews on")
        assert await axe_violations(page) == []

        await page.goto("/")
        await expect(page.get_by_test_id("vip-badge")).to_be_visible()
        assert await axe_violations(page) == []

        clock.advance(timedelta(minutes=1))
        await client_for(shop).earn(card, 10_000, "EUR", idempotency_key="vip-browser-after")
        await page.goto("/history")
        await expect(page.get_by_text("x1.5 VIP: +50 bonus points")).to_be_visible()
        await screenshot(page, "wallet-phone-vip-history")
        await context.close()
