"""Statements in headless Chromium: a cashier earns at the till by typed card
number late in the evening, sees the sale in transactions, and once the
business day is settled opens Statements, reads the day's lines and downloads
the day's CSV: the points-issued line and the entry row of that very earn.
Then the same statement on a tablet."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Page, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.portal.staff import create_staff
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day
from tests.e2e.browser.conftest import PHONE, TABLET, screenshot

EMAIL = "kim@night-deli.example"
PASSWORD = "late-night-sandwich"


@pytest.fixture(scope="module")
async def deli(
    pool: asyncpg.Pool, clock: ManualClock, make_partner: Callable[..., Awaitable[Credentials]]
) -> Credentials:
    # The evening before the day closes: the earn, the settlement run and the
    # download all fall inside one portal session (8 hours).
    day = business_date(clock.now())
    clock.set(day_end(day) - timedelta(hours=2))
    creds = await make_partner(code="night-deli", name="Night Deli")
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="night-deli",
            email=EMAIL,
            display_name="Kim",
            password=PASSWORD,
            now=clock.now(),
        ),
    )
    return creds


async def _no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page scrolls sideways ({scroll_width} > {width})"


async def test_earn_settle_and_download_the_days_statement_csv(
    phone: Page,
    tablet: Page,
    deli: Credentials,
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    card = await make_member(display_name="Grace Hopper")
    day = business_date(clock.now())

    await phone.goto("/portal/sign-in")
    await phone.get_by_label("Email").fill(EMAIL)
    await phone.get_by_label("Password").fill(PASSWORD)
    await phone.get_by_role("button", name="Sign in").click()
    await expect(phone.get_by_role("heading", name="Till", level=1)).to_be_visible()
    await phone.get_by_label("Card number").fill(" ".join(card[i : i + 4] for i in range(0, 16, 4)))
    await phone.get_by_role("button", name="Find member").click()
    await expect(phone.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    await phone.get_by_label("Purchase amount (€)").fill("12,50")
    await phone.get_by_role("button", name="Earn points").click()
    await expect(phone.get_by_role("status")).to_contain_text("12 points earned for 12,50 €")
    earn_id = await pool.fetchval(
        "SELECT id FROM transactions WHERE partner_id = $1 AND kind = 'earn'", deli.partner_id
    )

    await phone.get_by_role("link", name="Transactions").click()
    first = phone.locator("#rows tr:not(.more)").first
    await expect(first).to_contain_text("12,50 €")
    await expect(first).to_contain_text("•••• " + card[-4:])

    # Before the day ends there is nothing to show yet.
    await phone.get_by_role("link", name="Statements").click()
    await expect(phone.get_by_role("heading", name="Statements", level=1)).to_be_visible()
    await expect(phone.get_by_text("No statements yet")).to_be_visible()

    # The settlement job's work, run by hand: the day has just ended.
    clock.set(day_end(day) + timedelta(minutes=15))
    result = await settle_day(pool, day, clock.now())
    assert result.created

    await phone.reload()
    rows = phone.get_by_test_id("statement")
    await expect(rows).to_have_count(1)
    label = f"{day:%a} {day.day} {day:%b %Y}"
    await expect(rows.first).to_contain_text(label)
    await expect(rows.first).to_contain_text("-0,12 €")
    await expect(rows.first).to_contain_text("You pay Kring")
    await _no_sideways_scroll(phone, PHONE["viewport"]["width"])
    await screenshot(phone, "portal-statements-phone")

    await rows.first.get_by_role("link", name=label).click()
    await expect(phone.get_by_role("heading", name=f"Statement {label}")).to_be_visible()
    issued = phone.get_by_test_id("line-points_issued")
    await expect(issued).to_contain_text("Points issued")
    await expect(issued).to_contain_text("12")
    await expect(issued).to_contain_text("-0,12 €")
    await expect(phone.get_by_test_id("rounding-note")).to_contain_text("rounded half-even")
    await _no_sideways_scroll(phone, PHONE["viewport"]["width"])
    await screenshot(phone, "portal-statement-phone")

    async with phone.expect_download() as info:
        await phone.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename == f"kring-statement-night-deli-daily-{day}.csv"
    saved = await download.path()
    assert saved is not None
    text = await asyncio.to_thread(Path(saved).read_text, encoding="utf-8")
    rows_csv = list(csv.reader(io.StringIO(text)))
    assert rows_csv[0][:3] == ["record", "category", "transaction_id"]
    assert ["line", "points_issued", "", "", "", "1", "12", "", "-120000", "-0.12"] in rows_csv
    [entry] = [r for r in rows_csv if r[0] == "entry"]
    assert entry[1:3] == ["points_issued", str(earn_id)]
    assert entry[6:10] == ["12", "10000", "-120000", ""]

    # The same statement on a tablet: every column fits without scrolling sideways.
    await tablet.goto("/portal/sign-in")
    await tablet.get_by_label("Email").fill(EMAIL)
    await tablet.get_by_label("Password").fill(PASSWORD)
    await tablet.get_by_role("button", name="Sign in").click()
    await tablet.get_by_role("link", name="Statements").click()
    rows = tablet.get_by_test_id("statement")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link").click()
    await expect(tablet.get_by_role("link", name="Download CSV")).to_be_visible()
    await expect(tablet.get_by_role("columnheader", name="Exact amount")).to_be_visible()
    await _no_sideways_scroll(tablet, TABLET["viewport"]["width"])
    await screenshot(tablet, "portal-statement-tablet")
