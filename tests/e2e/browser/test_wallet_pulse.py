"""The pulse survey card on the wallet's home page in headless Chromium: a
member answers the three questions and htmx swaps the card for its thanks,
with no CSP violation; the next visit that month shows no card."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.e2e.browser.conftest import screenshot
from tests.e2e.browser.test_csp import RECORD_VIOLATIONS, Violations
from tests.e2e.browser.test_wallet import signed_in_context


async def test_a_member_answers_the_pulse_card_in_place(
    browser: Browser, live_server: str, make_member, pool, clock, settings
) -> None:
    card = await make_member(display_name="Pia Pulse")
    context = await signed_in_context(browser, live_server, pool, clock, settings, card)
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    violations = Violations(page)
    try:
        await page.goto("/")
        pulse = page.get_by_test_id("pulse-card")
        await expect(pulse).to_be_visible()
        await pulse.get_by_role("button", name="Send").click()  # nothing chosen yet
        await expect(pulse.get_by_role("alert")).to_have_text(
            "Choose an answer to each of the three questions."
        )
        for name, value in (("keep", "5"), ("more", "3"), ("recommend", "9")):
            await pulse.locator(f'input[name="{name}"][value="{value}"]').check()
        await pulse.get_by_role("button", name="Send").click()
        await expect(pulse.get_by_role("status")).to_contain_text("Your answers are in")
        assert page.url.rstrip("/") == live_server  # swapped in place, no navigation
        await screenshot(page, "wallet-pulse-answered")
        row = await pool.fetchrow(
            "SELECT keep_score, more_score, recommend_score FROM pulse_surveys p"
            " JOIN members m ON m.id = p.member_id WHERE m.card_number = $1",
            card,
        )
        assert tuple(row) == (5, 3, 9)
        await page.goto("/")
        await expect(page.get_by_test_id("pulse-card")).to_have_count(0)
        await violations.assert_none("wallet pulse card")
    finally:
        await context.close()
