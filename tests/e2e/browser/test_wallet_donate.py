"""Giving points in headless Chromium at a phone's size: the member opens
"Give points", gives 300 points to a charity, sees the donation in the
history, opens the printable yearly statement (print stylesheet applied:
the wallet's navigation is hidden on paper) and the charity's public page
with its running total. axe-core finds no serious or critical violations."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from playwright.async_api import Browser, expect

from api.charity import charities
from api.clock import ManualClock
from api.db.pool import transaction
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settings import Settings
from tests.conftest import balances
from tests.e2e.browser import test_wallet as wallet_browser
from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.test_wallet_referral import session_context


async def test_a_member_gives_points_sees_the_history_and_prints_the_statement(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    make_member: Any,
    make_partner: Any,
    client_for: Any,
) -> None:
    card = await make_member(email="giver@example.com", display_name="Gerda Giver")
    async with client_for(await make_partner(return_window_days=0)) as till:
        await till.earn(card, 100_000, "EUR")  # 1,000 points
    await release_due(pool, clock.now())
    new = charities.CharityIn(
        "KWF Kankerbestrijding",
        "Research into cancer.",
        None,
        "NL91ABNA0417164300",
        None,
        "KWF",
        True,
    )
    charity = await transaction(pool, lambda conn: charities.create_charity(conn, new, clock.now()))
    context = await session_context(browser, live_server, pool, clock, settings, card)
    page = await context.new_page()
    await page.goto("/")
    await page.get_by_role("link", name="Give points").first.click()
    await expect(page.get_by_role("heading", name="Give points", exact=True)).to_be_visible()
    assert await wallet_browser.axe_violations(page) == []
    await page.get_by_label("Points to give to KWF Kankerbestrijding").fill("300")
    await page.get_by_role("button", name="Give", exact=True).click()
    await expect(page.get_by_text("you gave 300 points to KWF Kankerbestrijding")).to_be_visible()
    await expect(page.get_by_test_id("donations")).to_contain_text("KWF Kankerbestrijding")
    assert await wallet_browser.axe_violations(page) == []
    assert (await balances(pool, card))["available"] == 700

    year = clock.now().astimezone(ZoneInfo("Europe/Amsterdam")).year
    await page.get_by_role("link", name=f"Donation statement {year}").click()
    await expect(page.get_by_test_id("member-name")).to_have_text("Gerda Giver")
    await expect(page.get_by_test_id("total-points")).to_have_text("300")
    await expect(page.get_by_test_id("anbi-note")).to_contain_text("ANBI")
    assert await wallet_browser.axe_violations(page) == []
    await page.emulate_media(media="print")
    await expect(page.locator("nav.tabs")).to_be_hidden()
    await expect(page.get_by_role("button", name="Print")).to_be_hidden()
    await expect(page.get_by_test_id("totals")).to_be_visible()
    await screenshot(page, "donation-statement-print")
    await page.emulate_media(media="screen")

    await page.goto(f"/charities/{charity.id}")
    await expect(page.get_by_test_id("total-points")).to_have_text("300")
    assert await wallet_browser.axe_violations(page) == []
    await context.close()
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
