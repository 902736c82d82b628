"""The API reference renders in a real browser, from vendored files only."""

from __future__ import annotations

from playwright.async_api import Page, Request, expect

from tests.e2e.browser.conftest import screenshot


async def test_schema_page_renders_partner_api_operations(tablet: Page, live_server: str) -> None:
    elsewhere: list[str] = []

    def note(request: Request) -> None:
        # What rendering needs must be local. (Redoc's footer logo is a remote
        # image; it fails quietly offline and nothing depends on it.)
        needed = request.resource_type in {"document", "script", "stylesheet", "fetch", "xhr"}
        if needed and not request.url.startswith((live_server, "data:", "blob:")):
            elsewhere.append(request.url)

    tablet.on("request", note)
    response = await tablet.goto("/schema")
    assert response is not None and response.ok
    await expect(tablet.get_by_text("Partner API", exact=True).first).to_be_visible()
    await expect(tablet.get_by_role("heading", name="Earn points for a purchase")).to_be_visible()
    path = await screenshot(tablet, "api-docs-tablet", full_page=False)
    assert path.stat().st_size > 10_000
    assert not elsewhere, f"the docs page fetched from elsewhere: {elsewhere}"
