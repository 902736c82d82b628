"""The programme health dashboard in headless Chromium: signed in to the
back-office, every figure's fragment loads, every chart draws (its canvas is
not blank), the tables hold the numbers, and the content security policy
reports no violation (Chart.js sizes its canvas through the CSSOM, which
style-src 'self' allows). A screenshot is saved as a test artifact."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from api.programme_health.definitions import FIGURES
from tests.conftest import backoffice_session
from tests.e2e.browser.conftest import ACTION_TIMEOUT_MS, screenshot
from tests.e2e.browser.test_csp import RECORD_VIOLATIONS, Violations
from tests.integration.test_programme_health import coalition

__all__ = ["coalition"]  # a fixture, used by name

LAPTOP = {"viewport": {"width": 1366, "height": 900}}
# How many pixels of a canvas are not transparent: 0 means Chart.js drew nothing.
PAINTED = """
(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
  return painted;
}
"""


async def test_the_dashboard_draws_every_chart_without_csp_violations(
    coalition, browser: Browser, live_server: str, http, pool, clock
) -> None:
    headers = await backoffice_session(http, pool, clock, "marketing")
    name, value = headers["Cookie"].split("=", 1)
    context = await browser.new_context(base_url=live_server, **LAPTOP)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    await context.add_cookies([{"name": name, "value": value, "url": live_server}])
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    violations = Violations(page)
    try:
        await page.goto("/backoffice/dashboard?months=3")
        # A locator assertion, not wait_for_function: that evaluates a string,
        # which the CSP (no 'unsafe-eval') forbids.
        await expect(page.locator("canvas[data-drawn]")).to_have_count(len(FIGURES))
        for key in FIGURES:
            canvas = page.locator(f"#chart-{key}")
            painted = await canvas.evaluate(PAINTED)
            assert painted > 100, (key, painted)
        flow = page.locator('table[data-figure="partner_flow"] tbody tr').first
        assert await flow.inner_text() == "Alpha\t150\t120\t270"
        await screenshot(page, "backoffice-dashboard")
        await violations.assert_none("/backoffice/dashboard")
    finally:
        await context.close()
