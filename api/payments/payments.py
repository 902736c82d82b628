"""Payments: starting one, and what a provider's notification does.

A payment is made for a *purpose* (what it pays for, e.g. `vip_subscription`)
and a *reference* in it (e.g. a VIP period): one payment per pair, so
`start_payment` is idempotent. A purpose is registered once at import time
with `register_purpose`: the EUR account its revenue is booked to and two
handlers, called inside the notification's transaction.

`handle_notification` is the one path every notification takes (Mollie's
webhook, the sandbox's webhook and checkout buttons, a poll). It fetches the
status from the provider (never from the notification), then in ONE
transaction, with the member's accounts and the payment row locked:

- records the notification in `payment_events`;
- moves the status, open to paid, failed, canceled or expired only: a repeat
  changes nothing and calls nothing, and a final status never changes again;
- when paid, books the EUR entry (kind `payment`): `programme_psp_clearing`
  +amount (the provider holds the money for the programme), the purpose's
  revenue account -amount;
- calls the purpose's `on_paid`, or `on_failed` for failed, canceled and
  expired, exactly once.

Call `start_payment` outside any transaction of yours that locks rows a
handler locks: for an off-session payment the sandbox answers at once, and
its notification (with the handler) runs before `start_payment` returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.db.sql import Query
from api.errors import Conflict, DomainError
from api.ledger.accounts import lock_member, programme_account
from api.ledger.entries import ENTRY_CTES, ENTRY_RESULT, Postings, entry_params
from api.ledger.idempotency import go_cte
from api.payments.mollie import MollieProvider, customer_for
from api.payments.providers import (
    FINAL_STATUSES,
    SEQUENCES,
    NewProviderPayment,
    PaymentProvider,
    default_provider,
    payment_not_found,
    provider_named,
    webhook_url,
)

ENTRY_KIND = "payment"
CLEARING_KIND = "programme_psp_clearing"
SOURCES = ("webhook", "checkout", "poll")
DESCRIPTION_CHARS_MAX = 255


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: int
    purpose: str
    reference: str
    member_id: int
    amount_cents: int
    currency: str
    description: str
    provider: str
    provider_payment_id: str | None
    status: str
    sequence: str
    checkout_url: str | None
    redirect_url: str
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    entry_id: int | None


@dataclass(frozen=True, slots=True)
class Checkout:
    payment_id: int
    # Where to send the member; None for an off-session payment.
    checkout_url: str | None
    status: str


Handler = Callable[[asyncpg.Connection, PaymentRow, datetime], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Purpose:
    name: str
    revenue_kind: str
    on_paid: Handler
    on_failed: Handler


_purposes: dict[str, Purpose] = {}


def register_purpose(
    purpose: str, *, revenue_kind: str, on_paid: Handler, on_failed: Handler
) -> None:
    """What payments for `purpose` book their revenue to (an EUR programme
    account kind) and do when paid, or when failed, canceled or expired.
    Registering again replaces the purpose (module reloads, tests)."""
    _purposes[purpose] = Purpose(purpose, revenue_kind, on_paid, on_failed)


def _purpose(name: str) -> Purpose:
    found = _purposes.get(name)
    if found is None:
        raise DomainError(f"no payment purpose {name!r} is registered", code="unknown_purpose")
    return found


_COLUMNS = """id, purpose, reference, member_id, amount_cents, currency, description, provider,
    provider_payment_id, status, sequence, checkout_url, redirect_url, created_at, updated_at,
    paid_at, entry_id"""


def _row(record: Any) -> PaymentRow:
    return PaymentRow(**{k: record[k] for k in PaymentRow.__slots__})


async def get_payment(pool: asyncpg.Pool | asyncpg.Connection, payment_id: int) -> PaymentRow:
    record = await pool.fetchrow(f"SELECT {_COLUMNS} FROM payments WHERE id = $1", payment_id)
    if record is None:
        raise payment_not_found()
    return _row(record)


async def find_payment(
    pool: asyncpg.Pool | asyncpg.Connection, purpose: str, reference: str
) -> PaymentRow | None:
    record = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM payments WHERE purpose = $1 AND reference = $2",
        purpose,
        reference,
    )
    return None if record is None else _row(record)


async def start_payment(
    pool: asyncpg.Pool,
    *,
    purpose: str,
    reference: str,
    member_id: int,
    amount_cents: int,
    description: str,
    redirect_url: str,
    now: datetime,
    sequence: str = "oneoff",
    provider: PaymentProvider | None = None,
) -> Checkout:
    """Start (or find) the payment for (purpose, reference) and return where
    the member pays. A repeat returns the existing payment; a repeat that
    differs in member, amount or sequence is a Conflict."""
    _purpose(purpose)
    if amount_cents <= 0:
        raise DomainError("a payment's amount must be positive", code="invalid_amount")
    if sequence not in SEQUENCES:
        raise DomainError(f"unknown payment sequence {sequence!r}", code="invalid_sequence")
    if not 1 <= len(description) <= DESCRIPTION_CHARS_MAX:
        raise DomainError("a payment's description is 1 to 255 characters", code="invalid_request")
    provider = provider or default_provider(pool)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO payments (purpose, reference, member_id, amount_cents, description,
                   provider, sequence, redirect_url, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
               ON CONFLICT (purpose, reference) DO NOTHING""",
            purpose,
            reference,
            member_id,
            amount_cents,
            description,
            provider.name,
            sequence,
            redirect_url,
            now,
        )
        # Locked while the provider creates it: a concurrent start waits, then
        # finds it created, so the provider never has two payments for one.
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM payments WHERE purpose = $1 AND reference = $2 FOR UPDATE",
            purpose,
            reference,
        )
        payment = _row(record)
        if (payment.member_id, payment.amount_cents, payment.sequence) != (
            member_id,
            amount_cents,
            sequence,
        ):
            raise Conflict(
                "a different payment was already started for this reference",
                code="payment_reference_reused",
            )
        if payment.provider_payment_id is not None or payment.status != "open":
            return Checkout(payment.id, payment.checkout_url, payment.status)
        if payment.provider != provider.name:
            provider = provider_named(pool, payment.provider)
        refused: DomainError | None = None
        customer_id = None
        if sequence != "oneoff" and isinstance(provider, MollieProvider):
            customer_id = await customer_for(pool, provider, member_id, now)
        try:
            created = await provider.create(
                NewProviderPayment(
                    payment_id=payment.id,
                    member_id=member_id,
                    amount_cents=amount_cents,
                    description=description,
                    redirect_url=redirect_url,
                    webhook_url=webhook_url(provider.name),
                    sequence=sequence,
                    customer_id=customer_id,
                )
            )
        except DomainError as exc:
            if exc.code != "provider_refused" or sequence != "recurring":
                raise
            refused = exc  # the payment row stays; it fails below, in its own transaction
        else:
            await conn.execute(
                "UPDATE payments SET provider_payment_id = $2, checkout_url = $3,"
                " updated_at = $4 WHERE id = $1",
                payment.id,
                created.id,
                created.checkout_url,
                now,
            )
    if refused is not None:
        # A renewal the provider will not even start (no valid mandate) has failed.
        done = await _fail_unsent(pool, payment.id, member_id, now)
        return Checkout(done.id, None, done.status)
    if created.status != "open":
        # Settled at once (an off-session payment): take the answer now, as a poll.
        done = await handle_notification(
            pool, provider.name, created.id, now, source="poll", provider=provider
        )
        return Checkout(done.id, done.checkout_url, done.status)
    return Checkout(payment.id, created.checkout_url, created.status)


async def _fail_unsent(
    pool: asyncpg.Pool, payment_id: int, member_id: int, now: datetime
) -> PaymentRow:
    """Fail a payment the provider refused to create, once, with its handler."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_member(conn, member_id)
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM payments WHERE id = $1 FOR UPDATE", payment_id
        )
        payment = _row(record)
        if payment.status != "open" or payment.provider_payment_id is not None:
            return payment
        await conn.execute(
            "INSERT INTO payment_events (payment_id, from_status, to_status, source, at)"
            " VALUES ($1, 'open', 'failed', 'poll', $2)",
            payment_id,
            now,
        )
        record = await conn.fetchrow(
            f"UPDATE payments SET status = 'failed', updated_at = $2 WHERE id = $1"
            f" RETURNING {_COLUMNS}",
            payment_id,
            now,
        )
        payment = _row(record)
        await _purpose(payment.purpose).on_failed(conn, payment, now)
        return payment


_POST = Query(f"WITH {go_cte(False)}, {ENTRY_CTES} SELECT {ENTRY_RESULT}")


async def _book(conn: asyncpg.Connection, payment: PaymentRow, now: datetime) -> int:
    """The EUR entry of a paid payment: clearing +amount, revenue -amount."""
    clearing = await programme_account(conn, CLEARING_KIND)
    revenue = await programme_account(conn, _purpose(payment.purpose).revenue_kind)
    postings = Postings().add(clearing, payment.amount_cents, "EUR")
    postings.add(revenue, -payment.amount_cents, "EUR")
    params = entry_params(postings, kind=ENTRY_KIND, booked_at=now, member_id=payment.member_id)
    row = await conn.fetchrow(_POST.text, *_POST.args(params))
    assert row is not None and row["entry_id"] is not None
    return int(row["entry_id"])


async def handle_notification(
    pool: asyncpg.Pool,
    provider_name: str,
    provider_payment_id: str,
    now: datetime,
    *,
    source: str = "webhook",
    provider: PaymentProvider | None = None,
) -> PaymentRow:
    """A provider says something happened to one of its payments: find out
    what, and apply it once. NotFound `payment_not_found` for an id that is
    not one of our payments with that provider."""
    if source not in SOURCES:
        raise ValueError(f"unknown notification source {source!r}")
    member_id = await pool.fetchval(
        "SELECT member_id FROM payments WHERE provider = $1 AND provider_payment_id = $2",
        provider_name,
        provider_payment_id,
    )
    if member_id is None:
        raise payment_not_found()
    provider = provider or provider_named(pool, provider_name)
    status = await provider.fetch(provider_payment_id)
    async with pool.acquire() as conn, conn.transaction():
        # The ledger's lock order: the member's accounts first (a handler may
        # post points), then the payment, programme accounts last.
        await lock_member(conn, member_id)
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM payments WHERE provider_payment_id = $1 FOR UPDATE",
            provider_payment_id,
        )
        payment = _row(record)
        moves = payment.status == "open" and status != "open"
        await conn.execute(
            "INSERT INTO payment_events (payment_id, from_status, to_status, source, at)"
            " VALUES ($1, $2, $3, $4, $5)",
            payment.id,
            payment.status,
            status if moves else payment.status,
            source,
            now,
        )
        if not moves:
            return payment
        assert status in FINAL_STATUSES
        entry_id = await _book(conn, payment, now) if status == "paid" else None
        record = await conn.fetchrow(
            f"""UPDATE payments SET status = $2, updated_at = $3, entry_id = $4,
                   paid_at = CASE WHEN $2 = 'paid' THEN $3::timestamptz END
                WHERE id = $1 RETURNING {_COLUMNS}""",
            payment.id,
            status,
            now,
            entry_id,
        )
        payment = _row(record)
        handlers = _purpose(payment.purpose)
        handler = handlers.on_paid if status == "paid" else handlers.on_failed
        await handler(conn, payment, now)
        return payment
