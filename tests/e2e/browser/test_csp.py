"""The content security policy (api/web/security_headers.py) in headless
Chromium: the wallet's pages, the portal's till with its camera scan (whose
decoder runs in a blob: worker) and the API reference at /schema work, and
the browser reports no violation of the policy on any of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.settings import Settings
from api.web.security_headers import API_DOCS_CSP, PAGE_CSP
from partners.client import PartnerClient
from tests.e2e.browser.test_till_scan import _scan_grace, filming, grace, scan_shop
from tests.e2e.browser.test_wallet import signed_in_context

__all__ = ["grace", "scan_shop"]  # fixtures, used by name

# Recorded from the document's start (an init script runs before any page script
# and is not itself subject to the page's policy).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
  );
});
"""


class Violations:
    """Every CSP violation a page reports: its console errors and its events."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    async def assert_none(self, where: str) -> None:
        events = await self.page.evaluate("window.__cspViolations || []")
        assert not self.console and not events, (where, self.console, events)


@pytest.fixture(scope="module")
async def member_card(
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> str:
    card = await make_member(display_name="Cora Policy")
    shop = client_for(await make_partner(code="csp-books", name="Policy Books"))
    await shop.earn(card, 4200, "EUR", idempotency_key="csp-earn-1")
    return card


async def test_wallet_pages_work_with_no_csp_violation(
    browser: Browser,
    live_server: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    member_card: str,
) -> None:
    context = await signed_in_context(browser, live_server, pool, clock, settings, member_card)
    try:
        await context.add_init_script(RECORD_VIOLATIONS)
        page = await context.new_page()
        violations = Violations(page)

        response = await page.goto("/")
        assert response is not None and response.headers["content-security-policy"] == PAGE_CSP
        await expect(page.get_by_test_id("pending-points")).to_have_text("42")
        await violations.assert_none("home")

        await page.goto("/card")
        # htmx (a same-origin script, no inline indicator style) swaps in the live QR.
        await expect(page.locator("svg.qr.live")).to_be_visible()
        await violations.assert_none("card")

        await page.goto("/history")
        await expect(page.locator("#history-list")).to_contain_text("Policy Books")
        await violations.assert_none("history")

        await page.goto("/challenges")
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await violations.assert_none("challenges")

        await page.goto("/profile")
        name = page.get_by_label("Name", exact=False).first
        await expect(name).to_be_visible()
        await page.get_by_role("button", name="Save").first.click()
        await expect(page.get_by_text("Your profile is saved.")).to_be_visible()
        await violations.assert_none("profile")
    finally:
        await context.close()


async def test_the_till_scans_a_card_with_no_csp_violation(
    browser: Browser, live_server: str, scan_shop: Credentials, grace: str, tmp_path: Path
) -> None:
    async with filming(grace, tmp_path, live_server) as page:
        await page.context.add_init_script(RECORD_VIOLATIONS)
        violations = Violations(page)
        await _scan_grace(page, grace)  # camera, qr-scanner's blob: worker, htmx lookup
        await violations.assert_none("till")


async def test_the_api_reference_renders_with_no_csp_violation(
    tablet: Page, live_server: str
) -> None:
    await tablet.context.add_init_script(RECORD_VIOLATIONS)
    violations = Violations(tablet)
    response = await tablet.goto("/schema")
    assert response is not None
    assert response.headers["content-security-policy"] == API_DOCS_CSP
    await expect(tablet.get_by_role("heading", name="Earn points for a purchase")).to_be_visible()
    await violations.assert_none("/schema")


async def test_an_inline_script_is_refused_on_a_wallet_page(phone: Page, live_server: str) -> None:
    """The policy is live, not decoration: an injected inline script does not run."""
    await phone.context.add_init_script(RECORD_VIOLATIONS)
    await phone.goto("/sign-in")
    ran: Any = await phone.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__injected = true";
          document.head.appendChild(s);
          return new Promise((done) => setTimeout(() => done(window.__injected === true), 50));
        }"""
    )
    assert ran is False
    events = await phone.evaluate("window.__cspViolations")
    assert any(e.startswith("script-src") for e in events), events
