"""Scanning a member's card QR at the till, in headless Chromium.

Chromium's fake camera plays a Y4M file made here from a QR code (segno) of a
real member's card number; the till's "Scan card" opens the camera, the
vendored qr-scanner decodes the frames (in its worker: Chromium on Linux has
no native BarcodeDetector), and the member appears as if the number had been
typed. Without a camera the button stays hidden and the page says why.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import segno
from playwright.async_api import Browser, Page, async_playwright, expect

from api.clock import ManualClock
from api.coalition.partners import Credentials
from api.db.pool import transaction
from api.portal.staff import create_staff
from tests.e2e.browser.conftest import (
    ACTION_TIMEOUT_MS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    screenshot,
)

EMAIL = "ola@scan-shop.example"
PASSWORD = "scan-the-card-please"
VIDEO_WIDTH, VIDEO_HEIGHT, VIDEO_FRAMES = 640, 480, 10
SCAN_TIMEOUT_MS = 20_000  # camera start, worker load and a few decode rounds


def card_qr_y4m(text: str, path: Path) -> Path:
    """A short Y4M video (4:2:0, full-range luma) of `text` as a QR code, black
    on white and centred, as Chromium's --use-file-for-fake-video-capture wants."""
    matrix = [bytes(row) for row in segno.make_qr(text, error="m").matrix]
    border = 4  # the quiet zone QR readers need around the code
    modules = len(matrix) + 2 * border
    scale = (VIDEO_HEIGHT * 8 // 10) // modules
    left = (VIDEO_WIDTH - modules * scale) // 2
    top = (VIDEO_HEIGHT - modules * scale) // 2
    white, black = 235, 16
    luma = bytearray([white]) * (VIDEO_WIDTH * VIDEO_HEIGHT)
    for y, row in enumerate(matrix):
        line = bytearray([white]) * VIDEO_WIDTH
        for x, dark in enumerate(row):
            if dark:
                start = left + (x + border) * scale
                line[start : start + scale] = bytes([black]) * scale
        for dy in range(scale):
            offset = (top + (y + border) * scale + dy) * VIDEO_WIDTH
            luma[offset : offset + VIDEO_WIDTH] = line
    chroma = bytes([128]) * (VIDEO_WIDTH * VIDEO_HEIGHT // 4)
    frame = b"FRAME\n" + bytes(luma) + chroma + chroma
    header = f"YUV4MPEG2 W{VIDEO_WIDTH} H{VIDEO_HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * VIDEO_FRAMES)
    return path


@pytest.fixture(scope="module")
async def scan_shop(
    pool: asyncpg.Pool, clock: ManualClock, make_partner: Callable[..., Awaitable[Credentials]]
) -> Credentials:
    creds = await make_partner(code="scan-shop", name="Scan Shop")
    await transaction(
        pool,
        lambda conn: create_staff(
            conn,
            partner_code="scan-shop",
            email=EMAIL,
            display_name="Ola",
            password=PASSWORD,
            now=clock.now(),
        ),
    )
    return creds


@pytest.fixture(scope="module")
async def grace(make_member: Callable[..., Awaitable[str]]) -> str:
    return await make_member(display_name="Grace Hopper")


@contextlib.asynccontextmanager
async def filming(text: str, folder: Path, live_server: str) -> AsyncIterator[Page]:
    """A phone page in a Chromium whose camera films a QR code of `text`."""
    video = card_qr_y4m(text, folder / "camera.y4m")
    fake_camera = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + fake_camera
        )
        try:
            context = await chromium.new_context(base_url=live_server, **PHONE)
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            await context.grant_permissions(["camera"], origin=live_server)
            yield await context.new_page()
        finally:
            await chromium.close()


async def _sign_in(page: Page) -> None:
    await page.goto("/portal/till")
    await page.get_by_label("Email").fill(EMAIL)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Till", level=1)).to_be_visible()


async def test_scanning_a_card_qr_finds_the_member_like_typing_the_number(
    browser: Browser, live_server: str, scan_shop: Credentials, grace: str, tmp_path: Path
) -> None:
    # `browser` first: it skips or fails without Chromium, as every browser test does.
    async with filming(grace, tmp_path, live_server) as page:
        await _scan_grace(page, grace)


async def _scan_grace(page: Page, grace: str) -> None:
    await _sign_in(page)
    scan = page.get_by_role("button", name="Scan card")
    await expect(scan).to_be_visible()
    await scan.click()
    await expect(scan).to_have_attribute("aria-expanded", "true")
    await expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible(
        timeout=SCAN_TIMEOUT_MS
    )
    # The same lookup as typing: the number is in the field and in the address.
    await expect(page.get_by_label("Card number")).to_have_value(grace)
    assert f"card={grace}" in page.url
    await expect(page.get_by_label("Card scanner")).to_be_hidden()  # the camera is closed
    await expect(page.get_by_label("Card number")).to_be_focused()
    await expect(page.get_by_test_id("available-points")).to_have_text("0 points")
    await screenshot(page, "portal-till-scanned-phone")


async def test_a_qr_code_that_is_not_a_card_is_refused_and_scanning_can_be_stopped(
    browser: Browser, live_server: str, scan_shop: Credentials, tmp_path: Path
) -> None:
    async with filming("https://example.com/not-a-card", tmp_path, live_server) as page:
        await _sign_in(page)
        scan = page.get_by_role("button", name="Scan card")
        await scan.click()
        scanner = page.get_by_role("group", name="Card scanner")
        await expect(scanner.get_by_role("status")).to_have_text(
            "That QR code is not a Kring card. Try the member's card.", timeout=SCAN_TIMEOUT_MS
        )
        await expect(page.get_by_label("Card number")).to_have_value("")
        await screenshot(page, "portal-till-scan-not-a-card-phone")
        await page.keyboard.press("Escape")  # focus is in the scanner (its Stop button)
        await expect(scanner).to_be_hidden()
        await expect(scan).to_be_focused()
        await expect(scan).to_have_attribute("aria-expanded", "false")
        await scan.click()
        await expect(scanner).to_be_visible()
        await page.get_by_role("button", name="Stop scanning").click()
        await expect(scanner).to_be_hidden()
        await expect(scan).to_be_focused()
        live = await page.evaluate(
            "Array.from(document.querySelectorAll('video')).filter(v => v.srcObject).length"
        )
        assert live == 0  # the camera is released at once, not left filming


async def test_without_a_camera_the_button_stays_hidden_and_the_page_says_why(
    phone: Page, scan_shop: Credentials
) -> None:
    await _sign_in(phone)
    await expect(phone.get_by_role("note")).to_have_text(
        "No camera found on this device: type the card number."
    )
    await expect(phone.get_by_role("button", name="Scan card")).to_be_hidden()
    await expect(phone.get_by_role("button", name="Find member")).to_be_visible()


def _qr_png_data_url(text: str) -> str:
    buffer = io.BytesIO()
    segno.make_qr(text, error="m").save(buffer, kind="png", scale=8, border=4)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_the_page_decodes_card_codes_and_refuses_other_codes(
    phone: Page, scan_shop: Credentials, grace: str
) -> None:
    """The decoding path on its own (no camera): qr-scanner reads a QR image,
    and only a 16-digit card number is taken as a card."""
    await _sign_in(phone)
    decoded: Any = await phone.evaluate(
        "url => QrScanner.scanImage(url, {returnDetailedScanResult: true}).then(r => r.data)",
        _qr_png_data_url(grace),
    )
    assert decoded == grace
    readings = await phone.evaluate(
        """texts => texts.map(t => KringTillScan.readCardCode(t))""",
        [
            grace,
            f" {grace[:4]} {grace[4:8]}-{grace[8:12]} {grace[12:]} ",
            "hello",
            grace[:15],
            grace + "0",
        ],
    )
    assert readings == [grace, grace, None, None, None]
