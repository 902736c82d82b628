"""The VIP subscription lifecycle, with the clock injected.

    pending --first payment paid--> active --renewal paid--> active (next period)
    pending --first payment failed--> abandoned (final)
    active --cancel--> active, cancel_at_period_end --period end--> cancelled (final)
    active --renewal failed, or unpaid at the period end--> grace
    grace --a retry paid--> active (the next period starts where the last ended)
    grace --grace_until passed--> lapsed (final); grace --cancel--> cancelled (final)

Each charge attempt is a `vip_charges` row whose id is the payment's
reference (`start_payment` is idempotent per reference), so a job that runs
twice, or a payment notification that comes twice, charges and extends once:
the charge row is re-read under its lock and only an open one changes. Every
status change appends a `vip_subscription_events` row. A member has at most
one subscription that is not over (a partial unique index); resubscribing
after the end makes a new one.

Benefits do not follow the status but the paid periods (api/vip/benefits.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from api.clock import add_months
from api.db.pool import transaction
from api.errors import Conflict, DomainError, NotFound
from api.payments.payments import PaymentRow, register_purpose, start_payment
from api.vip.plans import Plan, get_plan

log = logging.getLogger(__name__)

PURPOSE = "vip_subscription"
REVENUE_KIND = "programme_revenue_vip"
GRACE = timedelta(days=7)
RENEW_AHEAD = timedelta(days=1)  # the renewal is charged this long before the period ends
RETRY_EVERY = timedelta(days=1)  # a failed renewal is retried this often during grace
RENEWALS_PER_RUN_MAX = 500
OPEN_STATUSES = ("pending", "active", "grace")


def period_end(start: datetime, period: str) -> datetime:
    return add_months(start, 1 if period == "month" else 12)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    member_id: int
    plan_code: str
    plan_name: str
    status: str
    cancel_at_period_end: bool
    current_period_end: datetime | None
    grace_until: datetime | None
    created_at: datetime
    ended_at: datetime | None
    checkout_url: str | None  # pending: where to pay


_SUBSCRIPTION_COLUMNS = """
    s.id, s.member_id, s.plan_code, vp.name AS plan_name, s.status, s.cancel_at_period_end,
    s.current_period_end, s.grace_until, s.created_at, s.ended_at,
    (SELECT c.checkout_url FROM vip_charges c
     WHERE c.subscription_id = s.id AND c.status = 'open' AND s.status = 'pending'
     ORDER BY c.id DESC LIMIT 1) AS checkout_url
"""


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(**{name: row[name] for name in Subscription.__slots__})


async def current_subscription(
    conn: asyncpg.Connection | asyncpg.Pool, member_id: int
) -> Subscription | None:
    """The member's latest subscription (open, or the last one that ended)."""
    row = await conn.fetchrow(
        f"""SELECT {_SUBSCRIPTION_COLUMNS} FROM vip_subscriptions s
        JOIN vip_plans vp ON vp.code = s.plan_code
        WHERE s.member_id = $1 ORDER BY (s.status IN ('pending', 'active', 'grace')) DESC, s.id DESC
        LIMIT 1""",
        member_id,
    )
    return None if row is None else _subscription(row)


async def get_subscription(conn: asyncpg.Connection | asyncpg.Pool, sub_id: int) -> Subscription:
    row = await conn.fetchrow(
        f"""SELECT {_SUBSCRIPTION_COLUMNS} FROM vip_subscriptions s
        JOIN vip_plans vp ON vp.code = s.plan_code WHERE s.id = $1""",
        sub_id,
    )
    if row is None:
        raise NotFound("there is no such VIP subscription", code="vip_subscription_not_found")
    return _subscription(row)


async def _event(
    conn: asyncpg.Connection,
    sub_id: int,
    from_status: str | None,
    to_status: str,
    at: datetime,
    why: str,
) -> None:
    await conn.execute(
        "INSERT INTO vip_subscription_events (subscription_id, from_status, to_status, at, why)"
        " VALUES ($1, $2, $3, $4, $5)",
        sub_id,
        from_status,
        to_status,
        at,
        why,
    )


async def events(
    conn: asyncpg.Connection | asyncpg.Pool, sub_id: int
) -> list[tuple[str | None, str, datetime, str]]:
    rows = await conn.fetch(
        "SELECT from_status, to_status, at, why FROM vip_subscription_events"
        " WHERE subscription_id = $1 ORDER BY id",
        sub_id,
    )
    return [(r["from_status"], r["to_status"], r["at"], r["why"]) for r in rows]


# Subscribing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Charge:
    id: int
    member_id: int
    amount_cents: int
    sequence: str
    plan_name: str


async def _start(
    pool: asyncpg.Pool, charge: _Charge, redirect_url: str, now: datetime
) -> str | None:
    """Ask the payments layer for the charge's payment (idempotent per
    reference) and remember its id and checkout; the checkout URL (None for
    a renewal, which is charged off-session). Runs outside any transaction:
    an off-session payment's outcome (`on_paid`) arrives before it returns."""
    checkout = await start_payment(
        pool,
        purpose=PURPOSE,
        reference=str(charge.id),
        member_id=charge.member_id,
        amount_cents=charge.amount_cents,
        description=f"Kring {charge.plan_name}",
        redirect_url=redirect_url,
        now=now,
        sequence=charge.sequence,
    )
    await pool.execute(
        "UPDATE vip_charges SET payment_id = $2, checkout_url = $3"
        " WHERE id = $1 AND payment_id IS NULL",
        charge.id,
        str(checkout.payment_id),
        checkout.checkout_url,
    )
    return checkout.checkout_url


@dataclass(frozen=True, slots=True)
class Started:
    subscription: Subscription
    checkout_url: str | None  # None: nothing to pay (a cancellation undone)
    created: bool


async def subscribe(
    pool: asyncpg.Pool, member_id: int, plan_code: str, *, redirect_url: str, now: datetime
) -> Started:
    """A pending subscription and its first payment; the checkout to send the
    member to. Asking again while it is pending (same plan) returns the same
    checkout."""

    async def work(conn: asyncpg.Connection) -> tuple[int, _Charge, bool]:
        status = await conn.fetchval("SELECT status FROM members WHERE id = $1", member_id)
        if status != "active":
            raise Conflict("this member account is not active", code="member_not_active")
        plan = await get_plan(conn, plan_code)
        open_row = await conn.fetchrow(
            "SELECT id, plan_code, status FROM vip_subscriptions"
            " WHERE member_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            member_id,
            list(OPEN_STATUSES),
        )
        if open_row is not None:
            if open_row["status"] != "pending":
                raise Conflict("you are VIP already", code="vip_already_subscribed")
            if open_row["plan_code"] != plan_code:
                raise Conflict(
                    "a checkout for another plan is open: pay or cancel it first",
                    code="vip_checkout_open",
                )
            charge = await conn.fetchrow(
                "SELECT id, member_id, amount_cents, sequence FROM vip_charges"
                " WHERE subscription_id = $1 AND status = 'open' ORDER BY id DESC LIMIT 1",
                open_row["id"],
            )
            if charge is None:  # its payment is being finished right now
                raise Conflict("the checkout is being completed", code="vip_checkout_open")
            return open_row["id"], _Charge(**charge, plan_name=plan.name), False
        if not plan.active:
            raise Conflict("this plan takes no new members", code="vip_plan_inactive")
        try:
            async with conn.transaction():
                sub_id = await conn.fetchval(
                    "INSERT INTO vip_subscriptions (member_id, plan_code, status, created_at)"
                    " VALUES ($1, $2, 'pending', $3) RETURNING id",
                    member_id,
                    plan_code,
                    now,
                )
        except asyncpg.UniqueViolationError as exc:  # a concurrent subscribe won
            raise Conflict("a subscription is being made", code="vip_checkout_open") from exc
        charge = await _new_charge(conn, sub_id, member_id, plan, None, 1, "first", now)
        await _event(conn, sub_id, None, "pending", now, "subscribed")
        return sub_id, charge, True

    sub_id, charge, created = await transaction(pool, work)
    url = await _start(pool, charge, redirect_url, now)
    return Started(await get_subscription(pool, sub_id), url, created)


async def _new_charge(
    conn: asyncpg.Connection,
    sub_id: int,
    member_id: int,
    plan: Plan,
    period_starts_at: datetime | None,
    attempt: int,
    sequence: str,
    now: datetime,
) -> _Charge:
    charge_id = await conn.fetchval(
        "INSERT INTO vip_charges (subscription_id, member_id, plan_code, period_starts_at,"
        " attempt, sequence, amount_cents, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT DO NOTHING RETURNING id",
        sub_id,
        member_id,
        plan.code,
        period_starts_at,
        attempt,
        sequence,
        plan.price_cents,
        now,
    )
    if charge_id is None:
        raise Conflict("this charge exists", code="vip_charge_exists")
    return _Charge(charge_id, member_id, plan.price_cents, sequence, plan.name)


async def cancel(pool: asyncpg.Pool, member_id: int, now: datetime) -> Subscription:
    """Stop renewing: benefits last until the paid period ends. In grace (a
    renewal failed) the subscription ends now. Repeating changes nothing."""

    async def work(conn: asyncpg.Connection) -> int:
        row = await conn.fetchrow(
            "SELECT id, status, cancel_at_period_end FROM vip_subscriptions"
            " WHERE member_id = $1 AND status = ANY($2::text[]) FOR UPDATE",
            member_id,
            list(OPEN_STATUSES),
        )
        if row is None:
            raise NotFound("you have no VIP subscription", code="vip_not_subscribed")
        if row["status"] == "pending":
            raise Conflict(
                "the first payment is open: finish or cancel the checkout",
                code="vip_checkout_open",
            )
        if row["status"] == "grace":
            await conn.execute(
                "UPDATE vip_subscriptions SET status = 'cancelled', grace_until = NULL,"
                " ended_at = $2 WHERE id = $1",
                row["id"],
                now,
            )
            await _event(conn, row["id"], "grace", "cancelled", now, "cancelled in grace")
        elif not row["cancel_at_period_end"]:
            await conn.execute(
                "UPDATE vip_subscriptions SET cancel_at_period_end = true WHERE id = $1", row["id"]
            )
            await _event(conn, row["id"], "active", "active", now, "cancel at period end")
        return int(row["id"])

    return await get_subscription(pool, await transaction(pool, work))


async def resubscribe(
    pool: asyncpg.Pool,
    member_id: int,
    plan_code: str | None,
    *,
    redirect_url: str,
    now: datetime,
) -> Started:
    """Undo a cancellation before the period ends (nothing to pay), or
    subscribe again after the last subscription ended (its plan by default)."""

    async def undo(conn: asyncpg.Connection) -> int | None:
        row = await conn.fetchrow(
            "SELECT id, plan_code FROM vip_subscriptions WHERE member_id = $1"
            " AND status = 'active' AND cancel_at_period_end FOR UPDATE",
            member_id,
        )
        if row is None or (plan_code is not None and plan_code != row["plan_code"]):
            return None
        await conn.execute(
            "UPDATE vip_subscriptions SET cancel_at_period_end = false WHERE id = $1", row["id"]
        )
        await _event(conn, row["id"], "active", "active", now, "cancellation undone")
        return int(row["id"])

    undone = await transaction(pool, undo)
    if undone is not None:
        return Started(await get_subscription(pool, undone), None, False)
    if plan_code is None:
        last = await current_subscription(pool, member_id)
        if last is None:
            raise DomainError("name a plan to subscribe to", code="vip_plan_required")
        plan_code = last.plan_code
    return await subscribe(pool, member_id, plan_code, redirect_url=redirect_url, now=now)


# Payment outcomes (called by the payments layer in its transaction) --------------


_CHARGE_FOR_UPDATE = """
SELECT c.id, c.subscription_id, c.status, c.sequence, c.period_starts_at, c.amount_cents,
       s.status AS sub_status, s.current_period_end, s.member_id
FROM vip_charges c JOIN vip_subscriptions s ON s.id = c.subscription_id
WHERE c.id = $1
FOR UPDATE
"""


async def _open_charge(conn: asyncpg.Connection, payment: PaymentRow) -> asyncpg.Record | None:
    try:
        charge_id = int(payment.reference)
    except ValueError:
        log.error(
            "VIP payment %s has a reference that is no charge: %r", payment.id, payment.reference
        )
        return None
    row = await conn.fetchrow(_CHARGE_FOR_UPDATE, charge_id)
    if row is None or row["status"] != "open":
        return None  # unknown, or already finished: a repeat changes nothing
    return row


async def on_paid(conn: asyncpg.Connection, payment: PaymentRow, now: datetime) -> None:
    charge = await _open_charge(conn, payment)
    if charge is None:
        return
    await conn.execute(
        "UPDATE vip_charges SET status = 'paid', finished_at = $2,"
        " payment_id = coalesce(payment_id, $3) WHERE id = $1",
        charge["id"],
        now,
        str(payment.id),
    )
    sub_status = charge["sub_status"]
    if sub_status not in OPEN_STATUSES:
        # Paid after the subscription ended (a late retry): no period is added;
        # the payment stays on record for support to refund.
        await _event(
            conn,
            charge["subscription_id"],
            sub_status,
            sub_status,
            now,
            f"payment {payment.id} arrived after the end",
        )
        return
    plan_row = await conn.fetchrow(
        "SELECT p.* FROM vip_plans p JOIN vip_subscriptions s ON s.plan_code = p.code"
        " WHERE s.id = $1",
        charge["subscription_id"],
    )
    starts_at = now if sub_status == "pending" else charge["current_period_end"]
    ends_at = period_end(starts_at, plan_row["period"])
    await conn.execute(
        "INSERT INTO vip_periods (subscription_id, member_id, plan_code, charge_id, payment_id,"
        " amount_cents, multiplier_permille, monthly_bonus_points, free_lottery_tickets,"
        " starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        charge["subscription_id"],
        charge["member_id"],
        plan_row["code"],
        charge["id"],
        str(payment.id),
        charge["amount_cents"],
        plan_row["multiplier_permille"],
        plan_row["monthly_bonus_points"],
        plan_row["free_lottery_tickets"],
        starts_at,
        ends_at,
    )
    await conn.execute(
        "UPDATE vip_subscriptions SET status = 'active', current_period_end = $2,"
        " grace_until = NULL WHERE id = $1",
        charge["subscription_id"],
        ends_at,
    )
    why = {"pending": "first payment paid", "active": "renewed", "grace": "renewed in grace"}
    await _event(
        conn,
        charge["subscription_id"],
        sub_status,
        "active",
        now,
        f"{why[sub_status]} (payment {payment.id})",
    )


async def on_failed(conn: asyncpg.Connection, payment: PaymentRow, now: datetime) -> None:
    charge = await _open_charge(conn, payment)
    if charge is None:
        return
    await conn.execute(
        "UPDATE vip_charges SET status = 'failed', finished_at = $2,"
        " payment_id = coalesce(payment_id, $3) WHERE id = $1",
        charge["id"],
        now,
        str(payment.id),
    )
    sub_id, sub_status = charge["subscription_id"], charge["sub_status"]
    if sub_status == "pending":
        await conn.execute(
            "UPDATE vip_subscriptions SET status = 'abandoned', ended_at = $2 WHERE id = $1",
            sub_id,
            now,
        )
        await _event(
            conn,
            sub_id,
            "pending",
            "abandoned",
            now,
            f"first payment {payment.status} (payment {payment.id})",
        )
    elif sub_status == "active":
        await conn.execute(
            "UPDATE vip_subscriptions SET status = 'grace', grace_until = current_period_end + $2"
            " WHERE id = $1",
            sub_id,
            GRACE,
        )
        await _event(
            conn, sub_id, "active", "grace", now, f"renewal {payment.status} (payment {payment.id})"
        )


register_purpose(PURPOSE, revenue_kind=REVENUE_KIND, on_paid=on_paid, on_failed=on_failed)


# Jobs -------------------------------------------------------------------------

_DUE_RENEWALS = """
SELECT s.id, s.member_id, s.current_period_end, s.status,
       coalesce((SELECT max(c.attempt) FROM vip_charges c WHERE c.subscription_id = s.id
                 AND c.period_starts_at = s.current_period_end), 0) AS attempts
FROM vip_subscriptions s
JOIN members m ON m.id = s.member_id AND m.status = 'active'
WHERE (
    (s.status = 'active' AND NOT s.cancel_at_period_end AND s.current_period_end <= $1::timestamptz + $2::interval
     AND NOT EXISTS (SELECT FROM vip_charges c WHERE c.subscription_id = s.id
                     AND c.period_starts_at = s.current_period_end))
 OR (s.status = 'grace' AND s.grace_until > $1::timestamptz
     AND NOT EXISTS (SELECT FROM vip_charges c WHERE c.subscription_id = s.id
                     AND c.period_starts_at = s.current_period_end
                     AND (c.status = 'open' OR c.created_at > $1::timestamptz - $3::interval)))
)
ORDER BY s.current_period_end
LIMIT $4
"""


async def renew_due(pool: asyncpg.Pool, now: datetime, *, redirect_url: str = "/vip") -> int:
    """Charge the next period of every subscription that ends within
    RENEW_AHEAD, and retry failed renewals daily during grace. A charge row
    per (subscription, period start, attempt) makes two runs charge once;
    a charge whose payment was never started (a crash) is started again
    (idempotent per reference). Returns the payments started."""
    due = await pool.fetch(_DUE_RENEWALS, now, RENEW_AHEAD, RETRY_EVERY, RENEWALS_PER_RUN_MAX)
    for row in due:

        async def work(conn: asyncpg.Connection, row: asyncpg.Record = row) -> None:
            plan_row = await conn.fetchrow(
                "SELECT p.* FROM vip_plans p JOIN vip_subscriptions s ON s.plan_code = p.code"
                " WHERE s.id = $1",
                row["id"],
            )
            plan = Plan(**{name: plan_row[name] for name in Plan.__slots__})
            try:
                async with conn.transaction():
                    await _new_charge(
                        conn,
                        row["id"],
                        row["member_id"],
                        plan,
                        row["current_period_end"],
                        row["attempts"] + 1,
                        "recurring",
                        now,
                    )
            except Conflict:
                pass  # another run made it

        await transaction(pool, work)
    unstarted = await pool.fetch(
        "SELECT c.id, c.member_id, c.amount_cents, c.sequence, p.name AS plan_name"
        " FROM vip_charges c JOIN vip_plans p ON p.code = c.plan_code"
        " WHERE c.status = 'open' AND c.sequence = 'recurring' AND c.payment_id IS NULL"
        " ORDER BY c.id LIMIT $1",
        RENEWALS_PER_RUN_MAX,
    )
    for charge in unstarted:
        await _start(pool, _Charge(**charge), redirect_url, now)
    return len(unstarted)


_EXPIRE = """
WITH ended AS (
    UPDATE vip_subscriptions SET
        status = CASE WHEN status = 'grace' THEN 'lapsed'
                      WHEN cancel_at_period_end THEN 'cancelled' ELSE 'grace' END,
        ended_at = CASE WHEN status = 'grace' THEN grace_until
                        WHEN cancel_at_period_end THEN current_period_end END,
        grace_until = CASE WHEN status = 'active' AND NOT cancel_at_period_end
                           THEN current_period_end + $2::interval ELSE grace_until END
    WHERE (status = 'active' AND current_period_end <= $1::timestamptz)
       OR (status = 'grace' AND grace_until <= $1::timestamptz)
    RETURNING id, status,
        CASE WHEN status = 'grace' THEN 'active' WHEN status = 'lapsed' THEN 'grace'
             ELSE 'active' END AS from_status
)
INSERT INTO vip_subscription_events (subscription_id, from_status, to_status, at, why)
SELECT id, from_status, status, $1,
       CASE status WHEN 'lapsed' THEN 'grace period over'
                   WHEN 'cancelled' THEN 'cancelled at period end'
                   ELSE 'renewal not paid by the period end' END
FROM ended
RETURNING subscription_id
"""


async def expire_due(pool: asyncpg.Pool, now: datetime) -> int:
    """Periods that ended: a cancelled subscription ends, an unpaid renewal
    goes into grace, a grace past grace_until lapses. One statement; its
    WHERE re-checks under the row lock, so two runs change each once."""
    rows = await pool.fetch(_EXPIRE, now, GRACE)
    return len(rows)


async def end_for_closed_account(conn: asyncpg.Connection, member_id: int, now: datetime) -> None:
    """A member who closes their account: their subscription ends now (no
    renewal is charged; a pending one is abandoned), in the closure's
    transaction. Nothing is refunded automatically."""
    await conn.execute(
        """
        WITH ended AS (
            UPDATE vip_subscriptions s SET
                status = CASE WHEN s.status = 'pending' THEN 'abandoned' ELSE 'cancelled' END,
                ended_at = $2, grace_until = NULL, cancel_at_period_end = true
            FROM (SELECT id, status FROM vip_subscriptions
                  WHERE member_id = $1 AND status IN ('pending', 'active', 'grace')
                  FOR UPDATE) before
            WHERE s.id = before.id
            RETURNING s.id, before.status AS from_status, s.status AS to_status
        )
        INSERT INTO vip_subscription_events (subscription_id, from_status, to_status, at, why)
        SELECT id, from_status, to_status, $2, 'account closed' FROM ended
        """,
        member_id,
        now,
    )


async def export_rows(
    conn: asyncpg.Connection | asyncpg.Pool, member_id: int
) -> list[dict[str, Any]]:
    """The member's subscriptions and paid periods, for their data export."""
    rows = await conn.fetch(
        """
        SELECT s.plan_code, s.status, s.created_at, s.ended_at, s.current_period_end,
               coalesce(jsonb_agg(jsonb_build_object(
                   'starts_at', p.starts_at, 'ends_at', p.ends_at,
                   'amount_cents', p.amount_cents) ORDER BY p.starts_at)
                   FILTER (WHERE p.id IS NOT NULL), '[]')::text AS periods
        FROM vip_subscriptions s LEFT JOIN vip_periods p ON p.subscription_id = s.id
        WHERE s.member_id = $1 GROUP BY s.id ORDER BY s.id
        """,
        member_id,
    )
    return [
        {
            "plan": r["plan_code"],
            "status": r["status"],
            "created_at": r["created_at"].isoformat(),
            "ended_at": None if r["ended_at"] is None else r["ended_at"].isoformat(),
            "current_period_end": (
                None if r["current_period_end"] is None else r["current_period_end"].isoformat()
            ),
            "periods": json.loads(r["periods"]),
        }
        for r in rows
    ]
