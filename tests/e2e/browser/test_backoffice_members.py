"""The back-office in headless Chromium: a support admin signs in with password
and TOTP through the sign-in page, finds a member, asks for a large
adjustment (it waits); a finance admin signs in, approves it from the list,
and sees the member's new balance. Screenshots are saved; the browser reports
no content security policy violation on any page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pyotp
from playwright.async_api import Browser, Page, expect

from api.admin_auth import accounts as admin_accounts
from api.clock import ManualClock
from api.db.pool import transaction
from tests.conftest import ADMIN_PASSWORD, balances
from tests.e2e.browser.conftest import ACTION_TIMEOUT_MS, screenshot
from tests.e2e.browser.test_csp import RECORD_VIOLATIONS, Violations

LAPTOP = {"viewport": {"width": 1280, "height": 900}}


async def _admin(pool: asyncpg.Pool, clock: ManualClock, email: str, role: str) -> pyotp.TOTP:
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email=email, role=role, password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    return pyotp.parse_uri(created.totp_uri)


async def _sign_in(page: Page, email: str, totp: pyotp.TOTP, clock: ManualClock) -> None:
    await page.goto("/backoffice/adjustments")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    # The app runs on the test's clock, so the code is the one for its now.
    await page.get_by_label("Code from your authenticator app").fill(totp.at(clock.now()))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/backoffice/dashboard")


async def test_find_a_member_adjust_and_approve_as_a_second_admin(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    card = await make_member(email="bettie.browser@example.com", display_name="Bettie Browser")
    support_totp = await _admin(pool, clock, "sam.support@kring.example", "support")
    finance_totp = await _admin(pool, clock, "fay.finance@kring.example", "finance")

    context = await browser.new_context(base_url=live_server, **LAPTOP)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_init_script(RECORD_VIOLATIONS)
    try:
        page = await context.new_page()
        violations = Violations(page)
        await _sign_in(page, "sam.support@kring.example", support_totp, clock)

        await page.goto("/backoffice/members")
        await page.get_by_label("E-mail, name or card number").fill("bettie")
        await page.get_by_role("button", name="Search").click()
        await expect(page.get_by_role("cell", name=card)).to_be_visible()
        await screenshot(page, "backoffice-members-search")
        await violations.assert_none("members search")
        await page.get_by_role("link", name="Bettie Browser").click()
        await expect(page.get_by_role("heading", name="Bettie Browser")).to_be_visible()

        await page.get_by_label("Direction").select_option("credit")
        await page.get_by_label("Points", exact=True).fill("2500")
        await page.get_by_label("Reason").fill("Points lost in the March till outage")
        await screenshot(page, "backoffice-member-adjust")
        await page.get_by_role("button", name="Request adjustment").click()
        await expect(page.locator("#adjustment-status")).to_have_text("pending")
        await expect(page.get_by_text("You requested this adjustment")).to_be_visible()
        await expect(page.locator("#member-available")).to_have_text("0")
        await screenshot(page, "backoffice-adjustment-pending")
        await violations.assert_none("adjustment requested")
        assert (await balances(pool, card))["available"] == 0

        await page.get_by_role("button", name="Sign out").click()
        await _sign_in(page, "fay.finance@kring.example", finance_totp, clock)
        await page.goto("/backoffice/adjustments")
        await expect(page.get_by_role("cell", name="Bettie Browser")).to_be_visible()
        await screenshot(page, "backoffice-adjustments-pending")
        await page.get_by_role("button", name="Approve adjustment").first.click()
        await expect(page.locator("#adjustment-status")).to_have_text("booked")
        await expect(page.locator("#member-available")).to_have_text("2,500")
        await expect(page.get_by_text("approved by fay.finance@kring.example")).to_be_visible()
        await screenshot(page, "backoffice-adjustment-approved")
        await violations.assert_none("adjustment approved")
        assert (await balances(pool, card))["available"] == 2_500

        # The member's page shows the new balance and the entry in the ledger.
        await page.get_by_role("link", name="Bettie Browser").click()
        await expect(page.locator('[data-balance="available"]')).to_have_text("2,500")
        await expect(
            page.get_by_role("link", name="Points lost in the March till outage")
        ).to_be_visible()
        await screenshot(page, "backoffice-member-after-approval")
        await violations.assert_none("member page")
    finally:
        await context.close()
