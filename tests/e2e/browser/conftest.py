"""Browser fixtures: Debian's Chromium driven by Playwright, against the real
app served by uvicorn on a loopback port in the test's own event loop.

Chromium is the system package (`apt-get install chromium`); Playwright's own
browser download is not used. Without it the browser tests skip on a
developer's machine, and fail in CI (where `.ci/run` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = Path(os.environ.get("KRING_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_INSTALLED = CHROMIUM.is_file()
# The background-networking flags matter: without them Chromium dials out at start
# (updates, sync, field trials) and a closed network refuses it. Root needs --no-sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_DIR = Path(__file__).resolve().parents[3] / "test-artifacts" / "browser"
SERVER_START_SECONDS_MAX = 10.0
ACTION_TIMEOUT_MS = 10_000

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
TABLET: dict[str, Any] = {
    "viewport": {"width": 820, "height": 1180},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_INSTALLED:
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; CI must run the browser tests")
        # Justified only off CI: a developer without Debian's chromium still runs
        # every other test; CI (which installs chromium in .ci/run) never skips.
        pytest.skip(reason)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Ctrl-C belongs to pytest, not to the server under test.
        yield


@pytest.fixture(scope="module")
async def live_server(app: Any) -> AsyncIterator[str]:
    """The module's app (sharing its pool and clock) on a free loopback port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", loop="asyncio", log_level="warning"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(SERVER_START_SECONDS_MAX):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _context(browser: Browser, live_server: str, device: dict[str, Any]) -> BrowserContext:
    context = await browser.new_context(base_url=live_server, **device)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


@pytest.fixture
async def phone(browser: Browser, live_server: str) -> AsyncIterator[Page]:
    """A page in a fresh phone-sized context (no cookies from other tests)."""
    context = await _context(browser, live_server, PHONE)
    yield await context.new_page()
    await context.close()


@pytest.fixture
async def tablet(browser: Browser, live_server: str) -> AsyncIterator[Page]:
    context = await _context(browser, live_server, TABLET)
    yield await context.new_page()
    await context.close()


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as test-artifacts/browser/<name>.png (gitignored)."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    await page.screenshot(path=str(path), full_page=full_page)
    return path
