"""The built-in sandbox provider: a payment provider that lives in Kring.

Used when no Mollie key is configured (the embedded default, the demo and all
tests). Creating a payment gives a checkout page on Kring itself,
`/sandbox/checkout/{id}`, with Pay, Fail and Cancel buttons. The page's forms
carry a random per-payment token (the page is not behind a session, so the
token is what makes a forged cross-site POST useless). A button sets the
sandbox payment's status, then delivers the notification exactly as a provider
would, through `handle_notification`, and sends the member on to the
payment's redirect URL.

Off-session (recurring) payments complete at once: paid, unless the member's
sandbox mandate was marked to fail (`fail_next_recurring`, or the checkout's
"Pay, and make renewals fail" button), which fails the next one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.payments.providers import NewProviderPayment, ProviderPayment, payment_not_found

NAME = "sandbox"
CHECKOUT_PATH = "/sandbox/checkout/"
# What each checkout button does: the status it sets, and whether renewals fail after.
ACTIONS = {
    "pay": ("paid", False),
    "pay_fail_renewals": ("paid", True),
    "fail": ("failed", False),
    "cancel": ("canceled", False),
}


@dataclass(frozen=True, slots=True)
class SandboxCheckout:
    id: str
    amount_cents: int
    description: str
    status: str
    form_token: str
    redirect_url: str
    sequence: str


class SandboxProvider:
    name = NAME

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, payment: NewProviderPayment) -> ProviderPayment:
        provider_id = "sbx_" + secrets.token_urlsafe(12)
        status = "open"
        if payment.sequence == "recurring":
            failing = await self._pool.fetchval(
                "UPDATE sandbox_mandates SET fail_next_recurring = false"
                " WHERE member_id = $1 AND fail_next_recurring RETURNING true",
                payment.member_id,
            )
            status = "failed" if failing else "paid"
        await self._pool.execute(
            """INSERT INTO sandbox_payments (id, member_id, amount_cents, description, sequence,
                   status, form_token, redirect_url, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())""",
            provider_id,
            payment.member_id,
            payment.amount_cents,
            payment.description,
            payment.sequence,
            status,
            secrets.token_urlsafe(24),
            payment.redirect_url,
        )
        checkout = None if payment.sequence == "recurring" else CHECKOUT_PATH + provider_id
        return ProviderPayment(id=provider_id, checkout_url=checkout, status=status)

    async def fetch(self, provider_payment_id: str) -> str:
        status = await self._pool.fetchval(
            "SELECT status FROM sandbox_payments WHERE id = $1", provider_payment_id
        )
        if status is None:
            raise payment_not_found()
        return str(status)


async def fail_next_recurring(pool: asyncpg.Pool, member_id: int) -> None:
    """The member's next off-session sandbox payment fails (then they pass again)."""
    await pool.execute(
        """INSERT INTO sandbox_mandates (member_id, fail_next_recurring) VALUES ($1, true)
           ON CONFLICT (member_id) DO UPDATE SET fail_next_recurring = true""",
        member_id,
    )


async def get_checkout(pool: asyncpg.Pool, provider_payment_id: str) -> SandboxCheckout:
    row = await pool.fetchrow(
        """SELECT id, amount_cents, description, status, form_token, redirect_url, sequence
           FROM sandbox_payments WHERE id = $1""",
        provider_payment_id,
    )
    if row is None:
        raise payment_not_found()
    return SandboxCheckout(**dict(row))


async def complete_checkout(
    pool: asyncpg.Pool, provider_payment_id: str, action: str, form_token: str, now: datetime
) -> SandboxCheckout:
    """A checkout button: check the form's token, set the status (only an open
    sandbox payment moves), then notify as a provider would. Returns the
    checkout as it now is (its redirect URL is where the member goes)."""
    from api.errors import DomainError, Forbidden
    from api.payments.payments import handle_notification

    if action not in ACTIONS:
        raise DomainError("unknown checkout action", code="invalid_action")
    checkout = await get_checkout(pool, provider_payment_id)
    if not secrets.compare_digest(checkout.form_token.encode(), form_token.encode()):
        raise Forbidden("this form is not valid for this payment", code="invalid_form_token")
    status, fail_renewals = ACTIONS[action]
    async with pool.acquire() as conn, conn.transaction():
        member_id = await conn.fetchval(
            "UPDATE sandbox_payments SET status = $2 WHERE id = $1 AND status = 'open'"
            " RETURNING member_id",
            provider_payment_id,
            status,
        )
        if member_id is not None and fail_renewals:
            await conn.execute(
                """INSERT INTO sandbox_mandates (member_id, fail_next_recurring) VALUES ($1, true)
                   ON CONFLICT (member_id) DO UPDATE SET fail_next_recurring = true""",
                member_id,
            )
    await handle_notification(pool, NAME, provider_payment_id, now, source="checkout")
    return await get_checkout(pool, provider_payment_id)
