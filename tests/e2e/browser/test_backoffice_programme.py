"""The back-office programme pages in headless Chromium: an owner signs in
with password and TOTP, defines a challenge, runs a lottery draw and watches
its progress fragment poll until done, and opens the audit log, which shows
both changes; no CSP violation on the way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pyotp
from playwright.async_api import Browser, expect

from api.admin_auth import accounts as admin_accounts
from api.backoffice.pages import PROGRAMME_TZ
from api.clock import ManualClock
from api.db.pool import transaction
from api.engagement import lotteries
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.browser.conftest import ACTION_TIMEOUT_MS, screenshot
from tests.e2e.browser.test_csp import RECORD_VIOLATIONS, Violations

EMAIL = "owner-browser@kring.example"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}


async def test_owner_defines_a_challenge_draws_a_lottery_and_reads_the_audit_log(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email=EMAIL, role="owner", password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    # A lottery whose draw is due, with tickets, made as the admin API makes one.
    now = clock.now()
    new = lotteries.NewLottery(
        name="Browser draw",
        rules="One ticket, one chance.",
        ticket_price_points=100,
        tickets_per_member_max=3,
        sales_open_at=now - timedelta(hours=1),
        sales_close_at=now + timedelta(minutes=10),
        draw_at=now + timedelta(minutes=10),
        prizes=[lotteries.NewPrize(points=500), lotteries.NewPrize(voucher_text="A cake")],
    )
    made = await transaction(pool, lambda conn: lotteries.create_lottery(conn, new, now))
    for _ in range(4):
        card = await make_member()
        member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
        await lotteries.take_free_ticket(pool, member_id, made.lottery_id, clock.now())
    clock.advance(timedelta(minutes=15))

    context = await browser.new_context(base_url=live_server, **DESKTOP)  # type: ignore[arg-type]
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    violations = Violations(page)
    try:
        await page.goto("/backoffice/sign-in")
        await page.get_by_label("E-mail").fill(EMAIL)
        await page.get_by_label("Password").fill(ADMIN_PASSWORD)
        await page.get_by_label("Code from your authenticator app").fill(
            pyotp.parse_uri(created.totp_uri).at(clock.now())
        )
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/backoffice/dashboard")

        # A challenge, with a mistake first: the form comes back with the reason.
        await page.goto("/backoffice/challenges")
        await page.get_by_role("link", name="New challenge").click()
        await page.get_by_label("Name", exact=True).fill("Five visits in May")
        await page.get_by_label("Target").fill("5")
        await page.get_by_label("Reward (points)").fill("250")
        await page.get_by_label("Audience", exact=True).select_option("tier")
        await page.get_by_role("button", name="Create the challenge").click()
        await expect(page.get_by_role("alert")).to_contain_text(
            "Audience_tier: is required with audience 'tier'."
        )
        await violations.assert_none("challenge form")
        await page.get_by_label("Audience", exact=True).select_option("everyone")
        await page.get_by_role("button", name="Create the challenge").click()
        await expect(page.get_by_role("heading", name="Five visits in May")).to_be_visible()
        await expect(page.locator("#count-enrolled")).to_have_text("0")
        await screenshot(page, "backoffice-challenge")
        await violations.assert_none("challenge")

        # The draw: the progress fragment polls until done, winners shown.
        await page.goto(f"/backoffice/lotteries/{made.lottery_id}")
        await page.get_by_role("button", name="Run the draw").click()
        await expect(page.locator("#draw-status")).to_have_attribute("data-state", "done")
        await expect(page.get_by_role("status")).to_contain_text("Draw done: 2 winner(s) of 4")
        await expect(page.locator("tr.winner")).to_have_count(2)
        await expect(page.locator("#lottery-status")).to_have_text("drawn")
        seed = bytes(
            await pool.fetchval("SELECT seed FROM lotteries WHERE id = $1", made.lottery_id)
        ).hex()
        await expect(page.locator("#draw-seed")).to_have_text(seed)
        await screenshot(page, "backoffice-lottery-drawn")
        await violations.assert_none("lottery draw")

        # The audit log shows both, newest first.
        await page.get_by_role("link", name="Audit log").click()
        await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        entries = page.locator("tr.audit-entry")
        await expect(entries.first).to_contain_text("lottery.draw")
        await expect(entries.nth(1)).to_contain_text("challenge.create")
        await page.get_by_label("Action").fill("challenge.create")
        await page.get_by_role("button", name="Filter").click()
        await expect(entries).to_have_count(1)
        await screenshot(page, "backoffice-audit-log")
        await violations.assert_none("audit log")
        assert clock.now().astimezone(PROGRAMME_TZ).tzinfo is not None
    finally:
        await context.close()
