"""The sandbox checkout page in headless Chromium: it shows the amount and
what the payment is for, passes axe (no serious or critical violations), and
its Pay and Cancel buttons settle the payment and send the member on to the
payment's redirect URL."""

from __future__ import annotations

import itertools
import re
from typing import Any

from playwright.async_api import Page, expect

from api.payments.payments import PaymentRow, get_payment, register_purpose, start_payment
from tests.e2e.browser import test_wallet as wallet_browser
from tests.e2e.browser.conftest import screenshot

PURPOSE = "test_browser_checkout"
_references = itertools.count(1)
paid: list[int] = []


async def _on_paid(conn: Any, payment: PaymentRow, now: Any) -> None:
    paid.append(payment.id)


async def _on_failed(conn: Any, payment: PaymentRow, now: Any) -> None:
    pass


register_purpose(
    PURPOSE, revenue_kind="programme_revenue_vip", on_paid=_on_paid, on_failed=_on_failed
)


async def _start(pool: Any, clock: Any, make_member: Any, amount_cents: int) -> Any:
    card = await make_member()
    member = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    return await start_payment(
        pool,
        purpose=PURPOSE,
        reference=f"browser-{next(_references)}",
        member_id=member,
        amount_cents=amount_cents,
        description="Kring VIP, yearly",
        redirect_url="/health",
        now=clock.now(),
    )


async def test_pay_in_the_sandbox_checkout(phone: Page, pool, clock, make_member):
    checkout = await _start(pool, clock, make_member, 4990)
    await phone.goto(checkout.checkout_url)
    await expect(phone.get_by_role("heading", name="Sandbox checkout")).to_be_visible()
    await expect(phone.get_by_test_id("amount")).to_have_text("49,90 €")
    await expect(phone.get_by_test_id("description")).to_have_text("Kring VIP, yearly")
    assert await wallet_browser.axe_violations(phone) == []
    await screenshot(phone, "sandbox-checkout-phone")
    await phone.get_by_role("button", name="Pay", exact=True).click()
    await expect(phone).to_have_url(re.compile(r"/health$"))
    payment = await get_payment(pool, checkout.payment_id)
    assert payment.status == "paid" and payment.entry_id is not None
    assert paid.count(checkout.payment_id) == 1
    # Back on the page: it says paid and offers no buttons.
    await phone.goto(checkout.checkout_url)
    await expect(phone.get_by_test_id("status")).to_have_text("paid")
    await expect(phone.get_by_role("button")).to_have_count(0)


async def test_cancel_in_the_sandbox_checkout(phone: Page, pool, clock, make_member):
    checkout = await _start(pool, clock, make_member, 995)
    await phone.goto(checkout.checkout_url)
    await phone.get_by_role("button", name="Cancel").click()
    await expect(phone).to_have_url(re.compile(r"/health$"))
    assert (await get_payment(pool, checkout.payment_id)).status == "canceled"
    assert checkout.payment_id not in paid
