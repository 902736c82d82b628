"""Signing up in headless Chromium at a phone's size, with the code delivered
through a real SMTP server on loopback (aiosmtpd): a page that needs a
session sends the browser to sign in and back; a wrong code is announced; a
partner's earn for the new card shows on home and in history; sign-out ends
the session. axe-core finds no serious or critical violations
on the sign-in pages.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, expect

from api.app import create_app
from api.clock import ManualClock
from api.settings import Settings, load_settings
from tests.e2e.browser import test_wallet as wallet_browser
from tests.e2e.browser.conftest import ACTION_TIMEOUT_MS, PHONE, screenshot
from tests.integration.test_mail import Inbox, free_port

EMAIL = "new.member@example.com"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, smtp_server: tuple[Inbox, int]) -> Settings:
    return load_settings(
        {
            "KRING_DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "KRING_JWT_SECRET": "test-secret-" + "x" * 40,
            "KRING_SMTP_URL": f"smtp://127.0.0.1:{smtp_server[1]}",
        }
    )


@pytest.fixture(scope="module")
def app(settings: Settings, database_url: str, clock: ManualClock, pool: asyncpg.Pool) -> Any:
    application = create_app(settings, database_url, clock=clock)
    application.state.runtime.pool = pool
    return application


def code_in(inbox: Inbox, to: str) -> str:
    _, message = [m for m in inbox.messages if m[0].rcpt_tos == [to]][-1]
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    found = re.search(rb"\b(\d{6})\b", body)
    assert found is not None
    return found.group(1).decode()


@pytest.fixture
async def phone_page(browser: Browser, live_server: str) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=live_server, **PHONE)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield await context.new_page()
    await context.close()


async def test_a_new_member_signs_up_with_a_mailed_code(
    phone_page: Any,
    smtp_server: tuple[Inbox, int],
    pool: asyncpg.Pool,
    make_partner: Any,
    client_for: Any,
) -> None:
    page, (inbox, _) = phone_page, smtp_server
    await page.goto("/card")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/card$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to your wallet")
    await screenshot(page, "wallet-phone-sign-in")
    assert await wallet_browser.axe_violations(page) == []

    await page.get_by_label("E-mail address").fill(EMAIL)
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page).to_have_url(re.compile(r"/sign-in/code$"))
    await expect(page.get_by_text(EMAIL)).to_be_visible()
    code_field = page.get_by_label("Sign-in code")
    await expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    await expect(code_field).to_be_focused()
    assert await wallet_browser.axe_violations(page) == []
    assert await pool.fetchval("SELECT count(*) FROM members WHERE email = $1", EMAIL) == 0

    code = code_in(inbox, EMAIL)
    await code_field.fill(f"{(int(code) + 1) % 10**6:06d}")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("not right")
    await screenshot(page, "wallet-phone-sign-in-wrong-code")
    assert await wallet_browser.axe_violations(page) == []

    await page.get_by_label("Sign-in code").fill(code)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/card$"))
    card = await pool.fetchval("SELECT card_number FROM members WHERE email = $1", EMAIL)
    assert card is not None
    await expect(page.locator(".card-number")).to_have_text(
        " ".join(card[i : i + 4] for i in range(0, 16, 4))
    )

    # The new card works at a partner's till at once: an earn through the
    # partner API shows on home and in history.
    async with client_for(await make_partner(code="first-shop", name="First Shop")) as till:
        await till.earn(card, 1999, "EUR", receipt_ref="welcome")
    await page.goto("/")
    await expect(page.get_by_test_id("pending-points")).to_have_text("19")
    await page.goto("/history")
    await expect(page.locator("#history-list")).to_contain_text("First Shop")
    await expect(page.locator("#history-list")).to_contain_text("+19")

    await page.goto("/profile")
    await page.get_by_role("button", name=re.compile("sign out", re.IGNORECASE)).click()
    await expect(page).to_have_url(re.compile(r"/sign-in$"))
    await page.goto("/card")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/card$"))
