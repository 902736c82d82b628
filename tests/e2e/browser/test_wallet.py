"""The member wallet in headless Chromium at a phone's size: a partner's earn
shows on home and in history, the card shows its barcode and QR codes, the
card still renders from the service worker offline and with the server
stopped, Chromium finds the app installable, and axe-core finds no serious or
critical accessibility violations on the main pages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.member_auth.guards import WALLET_SESSION_COOKIE
from api.member_auth.sessions import open_session
from api.member_auth.tokens import WALLET_AUDIENCE, WALLET_SESSION_TTL, issue_session_token
from api.settings import Settings
from partners.client import PartnerClient
from tests.e2e.browser.conftest import (
    ACTION_TIMEOUT_MS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    SERVER_START_SECONDS_MAX,
    _Server,
    screenshot,
)

AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
TILL_SCAN_URL = "/static/js/till-scan.js"  # same origin: the page's policy allows it
SW_READY_MS = 10_000


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[tuple[str, _Server]]:
    """A server of its own, so that one test can stop it under the browser."""
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(SERVER_START_SECONDS_MAX):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await task


async def port_closed(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").split(":")
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            return True
        writer.close()
        await asyncio.sleep(0.05)
    return False


async def signed_in_context(
    browser: Browser,
    base_url: str,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    card: str,
) -> BrowserContext:
    """A phone context holding a wallet session for the member (made with the
    sign-in's own session functions, as the code sign-in does)."""
    row = await pool.fetchrow("SELECT id, public_id FROM members WHERE card_number = $1", card)
    now = clock.now()
    expires_at = now + WALLET_SESSION_TTL
    session_id = await transaction(
        pool, lambda conn: open_session(conn, row["id"], "wallet", now=now, expires_at=expires_at)
    )
    token = issue_session_token(
        session_id,
        row["public_id"],
        audience=WALLET_AUDIENCE,
        secret=settings.jwt_secret or "",
        now=now,
        expires_at=expires_at,
    )
    context = await browser.new_context(base_url=base_url, **PHONE)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_cookies(
        [{"name": WALLET_SESSION_COOKIE, "value": token, "url": base_url, "httpOnly": True}]
    )
    return context


async def card_cached(page: Page) -> None:
    """Wait until the service worker controls the page and has kept /card."""
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    if not await page.evaluate("!!navigator.serviceWorker.controller"):
        await page.reload()  # the first load was not yet under the worker
    await page.wait_for_function(
        """async () => {
          for (const name of await caches.keys()) {
            if (name.includes("-pages-") && await (await caches.open(name)).match("/card")) return true;
          }
          return false;
        }""",
        timeout=SW_READY_MS,
        polling=100,
    )


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    # Evaluated over the DevTools protocol: an added <script> with the file's
    # text would be an inline script, which the pages' policy refuses.
    await page.evaluate(AXE_JS.read_text())
    result: dict[str, Any] = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',"
        " 'wcag21aa', 'wcag22aa', 'best-practice']}})"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture(scope="module")
async def member_with_an_earn(
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    client_for: Callable[[Credentials], PartnerClient],
) -> str:
    card = await make_member(display_name="Pia Phone")
    kit = client_for(await make_partner(code="corner-books", name="Corner Books"))
    await kit.earn(card, 4250, "EUR", receipt_ref="8812", idempotency_key="wallet-browser-1")
    return card


async def test_wallet_on_a_phone_online_offline_and_installable(
    browser: Browser,
    app: Any,
    pool: asyncpg.Pool,
    clock: ManualClock,
    settings: Settings,
    member_with_an_earn: str,
) -> None:
    card = member_with_an_earn
    async with serving(app) as (base_url, server):
        context = await signed_in_context(browser, base_url, pool, clock, settings, card)
        page = await context.new_page()

        await page.goto("/")
        await expect(page.get_by_test_id("pending-points")).to_have_text("42")
        await expect(page.get_by_text("available on 16 Mar 2026")).to_be_visible()
        await expect(page.get_by_role("link", name="Corner Books")).to_be_visible()
        await screenshot(page, "wallet-phone-home")
        assert await axe_violations(page) == []

        await page.goto("/history")
        await expect(page.locator("#history-list .item")).to_have_count(1)
        await expect(page.locator("#history-list")).to_contain_text("Corner Books")
        await expect(page.locator("#history-list")).to_contain_text("+42")
        await screenshot(page, "wallet-phone-history")
        assert await axe_violations(page) == []
        await page.locator("#history-list .item a").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Corner Books")
        await expect(page.get_by_text("42,50 €")).to_be_visible()

        await page.goto("/card")
        await expect(page.locator("svg.barcode")).to_be_visible()
        await expect(page.locator(".qr-box svg.qr")).to_be_visible()
        live = page.locator("[data-card-token]")
        await expect(live.locator("svg.qr")).to_be_visible()  # htmx fetched the live token
        token = await live.get_attribute("data-card-token")
        assert token is not None and token.startswith("K1.")
        await expect(page.locator(".card-number")).to_have_text(
            " ".join(card[i : i + 4] for i in range(0, 16, 4))
        )
        await screenshot(page, "wallet-phone-card")
        assert await axe_violations(page) == []

        for path in ("/partners", "/profile"):
            await page.goto(path)
            assert await axe_violations(page) == [], path

        # The till's scanner reads the live token as a card code.
        scanner = await context.new_page()
        await scanner.goto("/offline")
        await scanner.add_script_tag(url=TILL_SCAN_URL)
        assert await scanner.evaluate("t => KringTillScan.readCardCode(t)", token.lower()) == token
        assert await scanner.evaluate("t => KringTillScan.readCardCode(t)", card) == card
        await scanner.close()

        await page.goto("/card")
        await card_cached(page)

        # 1. The browser is offline: the card comes from the worker; other pages say offline.
        await context.set_offline(True)
        await page.goto("/card")
        await expect(page.locator("svg.barcode")).to_be_visible()
        await expect(page.locator(".qr-box svg.qr")).to_be_visible()
        await expect(page.locator(".card-number")).to_contain_text(card[-4:])
        await page.goto("/history")
        await expect(page.get_by_role("heading", name="You are offline")).to_be_visible()
        await context.set_offline(False)

        # 2. The server is gone: the same.
        server.should_exit = True
        assert await port_closed(base_url), "the server did not stop"
        await page.goto("/card")
        await expect(page.locator("svg.barcode")).to_be_visible()
        await expect(page.locator(".qr-box svg.qr")).to_be_visible()
        await screenshot(page, "wallet-phone-card-server-stopped")
        await context.close()


async def test_chromium_finds_the_wallet_installable(
    browser: Browser, app: Any, tmp_path: Path
) -> None:
    """Page.getInstallabilityErrors over CDP: none. A persistent profile, since
    Chromium never offers to install from an incognito context (Playwright's
    new_context is one)."""
    async with serving(app) as (base_url, _):
        context = await browser.browser_type.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            base_url=base_url,
            **PHONE,
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto("/offline")  # public, and on the wallet's layout (manifest, worker)
            await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
            cdp = await context.new_cdp_session(page)
            found = await cdp.send("Page.getInstallabilityErrors")
            assert found["installabilityErrors"] == []
            manifest = await cdp.send("Page.getAppManifest")
            assert manifest["errors"] == []
            assert manifest["url"].endswith("/manifest.webmanifest")
        finally:
            await context.close()
