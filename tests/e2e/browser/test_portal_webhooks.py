"""The portal's webhooks page in headless Chromium: a manager registers an
endpoint (a bad URL first), copies the secret shown once, reads the delivery
log on a phone and loads more, rotates the secret, and disables the endpoint
after the browser asks to confirm."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.portal.staff import create_staff
from api.portal.webhooks import DELIVERY_LOG_PAGE_SIZE
from api.webhooks.delivery import deliver_due, fan_out
from partners.client import PartnerClient
from tests.e2e.browser.conftest import screenshot

MANAGER_EMAIL = "noor@hook-cafe.example"
PASSWORD = "webhooks-for-coffee"
HOOK_URL = "http://127.0.0.1:9/kring-events"  # loopback http: allowed in development
SALES = DELIVERY_LOG_PAGE_SIZE + 4


@pytest.fixture(scope="module")
async def cafe(
    pool: asyncpg.Pool, clock: ManualClock, make_partner: Callable[..., Awaitable[Credentials]]
) -> Credentials:
    creds = await make_partner(code="hook-cafe", name="Hook Café")
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="hook-cafe",
            email=MANAGER_EMAIL,
            display_name="Noor",
            password=PASSWORD,
            role="manager",
            now=clock.now(),
        ),
    )
    return creds


async def _sign_in(page: Page) -> None:
    await page.goto("/portal/sign-in")
    await page.get_by_label("Email").fill(MANAGER_EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Till", level=1)).to_be_visible()


async def _no_sideways_scroll(page: Page, width: int) -> None:
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page scrolls sideways ({scroll_width} > {width})"


async def test_a_manager_registers_reads_the_log_rotates_and_disables(
    tablet: Page,
    phone: Page,
    cafe: Credentials,
    pool: asyncpg.Pool,
    clock: ManualClock,
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> None:
    await _sign_in(tablet)
    await tablet.get_by_role("link", name="Webhooks").click()
    await expect(tablet.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    await expect(tablet.get_by_role("link", name="Webhooks")).to_have_attribute(
        "aria-current", "page"
    )

    url_field = tablet.get_by_label("Endpoint URL")
    await url_field.fill("http://pos.example.com/hooks")
    await tablet.get_by_role("button", name="Register endpoint").click()
    await expect(tablet.get_by_role("alert")).to_contain_text("must use https")
    await expect(url_field).to_have_attribute("aria-invalid", "true")
    await expect(url_field).to_be_focused()  # straight back to the field to fix it
    await expect(url_field).to_have_value("http://pos.example.com/hooks")
    await screenshot(tablet, "portal-webhooks-bad-url-tablet")

    await url_field.fill(HOOK_URL)
    await tablet.get_by_role("button", name="Register endpoint").click()
    await expect(tablet.get_by_role("heading", name="Endpoint registered")).to_be_visible()
    secret_field = tablet.get_by_label("Signing secret", exact=True)
    await expect(secret_field).to_be_focused()
    secret = await secret_field.input_value()
    stored = await pool.fetchval(
        "SELECT secret FROM webhook_endpoints WHERE partner_id = $1", cafe.partner_id
    )
    assert secret == stored and secret.startswith("whsec_")
    endpoint = tablet.get_by_role("listitem").filter(has_text=HOOK_URL)
    await expect(endpoint.get_by_test_id("endpoint-status")).to_have_text("Active")
    await _no_sideways_scroll(tablet, 820)
    await screenshot(tablet, "portal-webhooks-registered-tablet")

    # Sales announce events; the receiver is down, so every delivery is retried.
    card = await make_member()
    async with client_for(cafe) as client:
        for n in range(SALES):
            await client.earn(card, 500 + n, "EUR")
    await fan_out(pool, clock.now())
    await deliver_due(
        pool, clock.now(), transport=httpx.MockTransport(lambda _: httpx.Response(503))
    )

    await _sign_in(phone)
    await phone.goto("/portal/webhooks")
    await (
        phone.get_by_role("listitem")
        .filter(has_text=HOOK_URL)
        .get_by_role("link", name="Delivery log")
        .click()
    )
    await expect(phone.get_by_role("heading", name="Delivery log")).to_be_visible()
    await expect(phone.get_by_test_id("log-url")).to_have_text(HOOK_URL)
    rows = phone.get_by_test_id("delivery")
    await expect(rows).to_have_count(DELIVERY_LOG_PAGE_SIZE)
    await expect(rows.first).to_contain_text("points.earned")
    await expect(rows.first).to_contain_text("HTTP 503")
    await expect(rows.first).to_contain_text("pending")
    await _no_sideways_scroll(phone, 390)
    await screenshot(phone, "portal-webhooks-log-phone")
    await phone.get_by_role("link", name="Load more").click()
    await expect(rows).to_have_count(SALES)
    await expect(phone.get_by_role("link", name="Load more")).to_have_count(0)

    endpoint = tablet.get_by_role("listitem").filter(has_text=HOOK_URL)
    await endpoint.get_by_role("button", name="Rotate secret").click()
    await expect(tablet.get_by_role("heading", name="New signing secret")).to_be_visible()
    rotated = await tablet.get_by_label("Signing secret", exact=True).input_value()
    assert rotated != secret and rotated.startswith("whsec_")
    await expect(endpoint.get_by_test_id("endpoint-secret-state")).to_contain_text(
        "Rotated: the old secret also signs until"
    )

    asked: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    tablet.on("dialog", confirm)
    await endpoint.get_by_role("button", name="Disable").click()
    await expect(tablet.get_by_role("status")).to_contain_text(f"{HOOK_URL} is disabled")
    assert asked and asked[0].startswith(f"Disable {HOOK_URL}?")
    await expect(endpoint.get_by_test_id("endpoint-status")).to_contain_text("Disabled")
    await expect(endpoint.get_by_role("button")).to_have_count(0)  # nothing left to do to it
    assert await pool.fetchval(
        "SELECT disabled_at IS NOT NULL FROM webhook_endpoints WHERE partner_id = $1",
        cafe.partner_id,
    )
    await screenshot(tablet, "portal-webhooks-disabled-tablet")
