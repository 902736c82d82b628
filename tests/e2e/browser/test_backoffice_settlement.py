"""Settlement in the back-office, in headless Chromium: a finance admin signs
in with password and TOTP, runs yesterday's settlement from the page and
watches its progress until the statements appear; a second finance admin
approves the run and downloads the SEPA file, which validates against the
pain.001 schema. The first admin cannot approve their own run. No page
reports a content-security-policy violation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import asyncpg
import pyotp
import pytest
import xmlschema
from playwright.async_api import Browser, BrowserContext, Page, expect

from api.admin_auth.accounts import create_admin
from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.ledger.lots import release_due
from api.settings import Settings, load_settings
from api.settlement.payouts import PAIN001_SCHEMA
from api.settlement.periods import business_date, day_end
from partners.client import PartnerClient
from tests.conftest import ADMIN_PASSWORD, JWT_SECRET
from tests.e2e.browser.conftest import TABLET, screenshot
from tests.e2e.browser.test_csp import RECORD_VIOLATIONS, Violations

MAKER = "maker@kring.example"
CHECKER = "checker@kring.example"
JOB_DONE_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        {
            "KRING_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "KRING_JWT_SECRET": JWT_SECRET,
            "KRING_PAYOUT_ACCOUNT_NAME": "Kring B.V.",
            "KRING_PAYOUT_IBAN": "NL91ABNA0417164300",
        }
    )


@pytest.fixture(scope="module")
async def settled_yesterday(
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    """A day with an earn at one partner and burns at two others, then the next morning."""
    shop = await make_partner(code="bs-market", name="Versmarkt", return_window_days=0)
    cinema = await make_partner(
        code="bs-cinema", name="Cinema Lux", iban="NL91ABNA0417164300", account_holder="Lux BV"
    )
    cafe = await make_partner(code="bs-cafe", name="Café Zoë")  # no IBAN: flagged
    card = await make_member()
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=80_000, currency="EUR")
    await release_due(pool, clock.now())
    async with client_for(cinema) as client:
        await client.burn(card_number=card, points=500)
    async with client_for(cafe) as client:
        await client.burn(card_number=card, points=60)
    day = business_date(clock.now())
    clock.set(day_end(day) + timedelta(hours=7))


async def _admin(pool: asyncpg.Pool, clock: ManualClock, email: str) -> pyotp.TOTP:
    created = await transaction(
        pool,
        lambda conn: create_admin(
            conn, email=email, role="finance", password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    return pyotp.parse_uri(created.totp_uri)  # type: ignore[return-value]  # a TOTP URI


async def _signed_in(
    browser: Browser, live_server: str, email: str, totp: pyotp.TOTP, clock: ManualClock
) -> tuple[BrowserContext, Page, Violations]:
    context = await browser.new_context(base_url=live_server, **TABLET)
    context.set_default_timeout(10_000)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    violations = Violations(page)
    await page.goto("/backoffice/settlement")  # anonymous: sent to sign in
    await expect(page).to_have_url(f"{live_server}/backoffice/sign-in")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_label("Code from your authenticator app").fill(totp.at(clock.now()))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{live_server}/backoffice/dashboard")
    return context, page, violations


async def test_run_watch_approve_and_download_the_sepa_file(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settled_yesterday: None,
    tmp_path: Path,
) -> None:
    maker_totp = await _admin(pool, clock, MAKER)
    checker_totp = await _admin(pool, clock, CHECKER)
    yesterday = business_date(clock.now()) - timedelta(days=1)

    maker, page, maker_violations = await _signed_in(browser, live_server, MAKER, maker_totp, clock)
    try:
        await page.goto("/backoffice/settlement")
        await expect(page.get_by_label("Business day")).to_have_value(yesterday.isoformat())
        await screenshot(page, "backoffice-settlement-runs")
        await page.get_by_role("button", name="Run settlement").click()
        await page.wait_for_url(f"{live_server}/backoffice/settlement/jobs/*")
        await screenshot(page, "backoffice-settlement-progress")
        # htmx polls the progress fragment every second until the job is done.
        await expect(page.locator("#job-status")).to_contain_text(
            "Done: 1 of 1 days settled.", timeout=JOB_DONE_TIMEOUT_MS
        )
        statements = page.locator("#job-statements")
        await expect(statements).to_contain_text("bs-cinema")
        await expect(statements).to_contain_text("bs-market")
        await screenshot(page, "backoffice-settlement-done")

        await page.get_by_role("link", name="Open the run").click()
        await expect(page.locator("#approval")).to_have_text("awaiting approval")
        await expect(page.locator("#awaiting")).to_be_visible()
        await expect(page.locator("#approve")).to_have_count(0)  # the maker does not check
        await expect(page.locator("#sepa-download")).to_have_count(0)
        await expect(page.locator("#flagged")).to_contain_text("bs-cafe")
        run_url = page.url
        await screenshot(page, "backoffice-settlement-awaiting-approval")
        await maker_violations.assert_none("maker's pages")
    finally:
        await maker.close()

    checker, page, checker_violations = await _signed_in(
        browser, live_server, CHECKER, checker_totp, clock
    )
    try:
        await page.goto(run_url)
        await page.locator("#approve").click()
        await expect(page.locator("#approval")).to_have_text("approved")
        await expect(page.get_by_text(CHECKER, exact=True)).to_be_visible()
        await screenshot(page, "backoffice-settlement-approved")
        async with page.expect_download() as downloading:
            await page.locator("#sepa-download").click()
        download = await downloading.value
        assert download.suggested_filename == f"kring-payouts-{yesterday.isoformat()}.xml"
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        xml = saved.read_text()
        xsd = files("sepaxml") / "schemas" / f"{PAIN001_SCHEMA}.xsd"
        xmlschema.XMLSchema(str(xsd)).validate(xml)
        assert "NL91ABNA0417164300" in xml and '<InstdAmt Ccy="EUR">4.00</InstdAmt>' in xml
        await checker_violations.assert_none("checker's pages")
    finally:
        await checker.close()
    approver = await pool.fetchval(
        "SELECT a.email FROM settlement_runs r JOIN admin_accounts a"
        " ON a.id = r.approved_by_admin_id WHERE r.business_date = $1",
        yesterday,
    )
    assert approver == CHECKER
