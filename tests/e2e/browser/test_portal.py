"""The partner portal in headless Chromium at phone size: sign in, earn at the
till by typed card number, see the sale in transactions, load more, sign out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from playwright.async_api import Page, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.portal.staff import create_staff
from partners.client import PartnerClient
from tests.conftest import balances
from tests.e2e.browser.conftest import screenshot

EMAIL = "sam@corner-bakery.example"
MANAGER_EMAIL = "robin@corner-bakery.example"
PASSWORD = "croissant-at-seven"
EARLIER_SALES = 30  # more than one page of transactions (25)


@pytest.fixture(scope="module")
async def bakery(
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> Credentials:
    creds = await make_partner(code="corner-bakery", name="Corner Bakery")
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="corner-bakery",
            email=EMAIL,
            display_name="Sam",
            password=PASSWORD,
            now=clock.now(),
        ),
    )
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="corner-bakery",
            email=MANAGER_EMAIL,
            display_name="Robin",
            password=PASSWORD,
            role="manager",
            now=clock.now(),
        ),
    )
    regular = await make_member(display_name="Regular")
    async with client_for(creds) as client:
        for n in range(EARLIER_SALES):
            await client.earn(regular, 300 + n, "EUR", idempotency_key=f"earlier-{n}")
    return creds


async def test_sign_in_earn_at_the_till_and_see_it_in_transactions(
    phone: Page,
    bakery: Credentials,
    pool: asyncpg.Pool,
    make_member: Callable[..., Awaitable[str]],
) -> None:
    card = await make_member(display_name="Ada Lovelace")

    await phone.goto("/portal/till")
    await expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(phone, "portal-sign-in-phone")
    await phone.get_by_label("Email").fill(EMAIL)
    await phone.get_by_label("Password").fill("not-the-password")
    await phone.get_by_role("button", name="Sign in").click()
    await expect(phone.get_by_role("alert")).to_have_text("Wrong email or password.")
    await phone.get_by_label("Password").fill(PASSWORD)
    await phone.get_by_role("button", name="Sign in").click()
    await expect(phone.get_by_role("heading", name="Till", level=1)).to_be_visible()

    # Typed as printed on the card, in groups of four.
    await phone.get_by_label("Card number").fill(" ".join(card[i : i + 4] for i in range(0, 16, 4)))
    await phone.get_by_role("button", name="Find member").click()
    await expect(phone.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    await phone.get_by_label("Purchase amount (€)").fill("12,50")
    await phone.get_by_role("button", name="Earn points").click()
    await expect(phone.get_by_role("status")).to_contain_text("12 points earned for 12,50 €")
    await screenshot(phone, "portal-till-earned-phone")
    assert (await balances(pool, card))["pending"] == 12

    await phone.get_by_label("Points").fill("5000")
    await phone.get_by_role("button", name="Redeem points").click()
    await expect(phone.get_by_role("alert")).to_be_visible()  # a readable refusal, not JSON
    await screenshot(phone, "portal-till-refused-phone")

    await phone.get_by_role("link", name="Transactions").click()
    rows = phone.locator("#rows tr:not(.more)")
    first = rows.first
    await expect(first).to_contain_text("12,50 €")
    await expect(first).to_contain_text("•••• " + card[-4:])
    await expect(rows).to_have_count(25)
    await screenshot(phone, "portal-transactions-phone")
    await phone.get_by_role("link", name="Load more").click()
    await expect(rows).to_have_count(EARLIER_SALES + 1)
    await expect(phone.get_by_role("link", name="Load more")).to_have_count(0)

    await phone.get_by_role("button", name="Sign out").click()
    await expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()
    await phone.goto("/portal/transactions")
    await expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()


async def test_a_manager_rotates_api_credentials_on_a_tablet(
    tablet: Page, bakery: Credentials
) -> None:
    await tablet.goto("/portal/sign-in")
    await tablet.get_by_label("Email").fill(MANAGER_EMAIL)
    await tablet.get_by_label("Password").fill(PASSWORD)
    await tablet.get_by_role("button", name="Sign in").click()
    await expect(tablet.get_by_role("heading", name="Till", level=1)).to_be_visible()
    width = await tablet.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, "the till scrolls sideways on a tablet"
    await screenshot(tablet, "portal-till-tablet")

    await tablet.get_by_role("link", name="API access").click()
    await expect(tablet.get_by_text(bakery.client_id)).to_be_visible()
    await tablet.get_by_role("button", name="Issue new credentials").click()
    await expect(tablet.get_by_role("status")).to_contain_text("not shown again")
    secret = await tablet.get_by_test_id("client-secret").inner_text()
    assert secret.startswith("ks_")
    await expect(tablet.get_by_text(bakery.client_id)).to_have_count(0)
    await screenshot(tablet, "portal-credentials-tablet")
