"""VIP subscriptions with the clock under control: subscribe and pay,
renew, fail and recover within grace, fail and lapse, cancel at period end,
resubscribe; the multiplier applies exactly inside the paid window; a
duplicated payment notification changes nothing; the monthly bonus is paid
once; `ledger check` stays clean."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from api.clock import add_months
from api.coalition.member_profile import (
    ACCOUNT_DELETION_CONFIRMATION,
    delete_account,
    export_member_data,
)
from api.coalition.member_views import member_history
from api.db.pool import transaction
from api.engagement import lotteries
from api.errors import Conflict, NotFound
from api.ledger.check import check_ledger
from api.payments import sandbox
from api.payments.payments import find_payment, handle_notification
from api.vip import benefits, subscriptions
from api.vip.subscriptions import GRACE, RENEW_AHEAD

PLAN = "vip_monthly"


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def pay(pool, clock, checkout_url: str, action: str = "pay") -> None:
    provider_id = checkout_url.removeprefix(sandbox.CHECKOUT_PATH)
    checkout = await sandbox.get_checkout(pool, provider_id)
    await sandbox.complete_checkout(pool, provider_id, action, checkout.form_token, clock.now())


async def subscribed(pool, clock, member_id: int, plan: str = PLAN) -> subscriptions.Subscription:
    started = await subscriptions.subscribe(
        pool, member_id, plan, redirect_url="/vip", now=clock.now()
    )
    assert started.subscription.status == "pending" and started.checkout_url
    await pay(pool, clock, started.checkout_url)
    sub = await subscriptions.get_subscription(pool, started.subscription.id)
    assert sub.status == "active"
    return sub


async def earn(client_for, shop, card: str, cents: int = 10_000):
    async with client_for(shop) as client:
        return await client.earn(card_number=card, amount_cents=cents, currency="EUR")


async def last_earn(pool, card: str):
    return await pool.fetchrow(
        "SELECT t.points, t.bonus_points, t.multiplier_permille, t.vip_multiplier_permille"
        " FROM transactions t JOIN members m ON m.id = t.member_id"
        " WHERE m.card_number = $1 AND t.kind = 'earn' ORDER BY t.created_at DESC, t.id DESC"
        " LIMIT 1",
        card,
    )


async def whys(pool, sub_id: int) -> list[tuple[str | None, str]]:
    return [(f, t) for f, t, _, _ in await subscriptions.events(pool, sub_id)]


async def jobs(pool, clock) -> None:
    await subscriptions.expire_due(pool, clock.now())
    await subscriptions.renew_due(pool, clock.now())


async def assert_ledger_clean(pool) -> None:
    async with pool.acquire() as conn:
        assert [v.describe() for v in await check_ledger(conn)] == []


async def test_subscribe_pay_renew_and_the_multiplier_window(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    member = await member_id_of(pool, card)
    assert await benefits.vip_multiplier(pool, member, clock.now()) is None
    sub = await subscribed(pool, clock, member)
    start = clock.now()
    assert sub.current_period_end == add_months(start, 1)
    assert await benefits.vip_multiplier(pool, member, start) == 1500

    # A VIP earn: x1.5 on the lowest tier (Bronze, x1), one bonus lot.
    await earn(client_for, shop, card)
    row = await last_earn(pool, card)
    assert (row["points"], row["bonus_points"]) == (100, 50)
    assert (row["multiplier_permille"], row["vip_multiplier_permille"]) == (1500, 1500)

    # Renewal: charged a day ahead, off-session, paid at once; twice = once.
    clock.set(sub.current_period_end - RENEW_AHEAD - timedelta(seconds=1))
    await jobs(pool, clock)
    assert (await subscriptions.get_subscription(pool, sub.id)).current_period_end == (
        sub.current_period_end
    )
    clock.set(sub.current_period_end - RENEW_AHEAD)
    await jobs(pool, clock)
    await jobs(pool, clock)
    renewed = await subscriptions.get_subscription(pool, sub.id)
    assert renewed.status == "active"
    assert renewed.current_period_end == add_months(sub.current_period_end, 1)
    periods = await pool.fetch(
        "SELECT starts_at, ends_at FROM vip_periods WHERE subscription_id = $1 ORDER BY starts_at",
        sub.id,
    )
    assert [(p["starts_at"], p["ends_at"]) for p in periods] == [
        (start, sub.current_period_end),
        (sub.current_period_end, renewed.current_period_end),
    ]
    assert await whys(pool, sub.id) == [
        (None, "pending"),
        ("pending", "active"),
        ("active", "active"),
    ]
    # The payments layer booked the revenue: two payments, EUR.
    assert (
        await pool.fetchval("SELECT -balance FROM accounts WHERE kind = 'programme_revenue_vip'")
        >= 2 * 499
    )

    # Cancel at period end: benefits to the last second, then none.
    await subscriptions.cancel(pool, member, clock.now())
    cancelled = await subscriptions.cancel(pool, member, clock.now())  # a repeat: no change
    assert cancelled.cancel_at_period_end and cancelled.status == "active"
    end = renewed.current_period_end
    clock.set(end - timedelta(seconds=1))
    await jobs(pool, clock)  # no renewal is charged
    assert (
        await pool.fetchval("SELECT count(*) FROM vip_charges WHERE subscription_id = $1", sub.id)
        == 2
    )
    await earn(client_for, shop, card)
    assert (await last_earn(pool, card))["vip_multiplier_permille"] == 1500
    clock.set(end + timedelta(seconds=1))
    await earn(client_for, shop, card)  # before the job ran: the window decides
    row = await last_earn(pool, card)
    assert (row["bonus_points"], row["multiplier_permille"], row["vip_multiplier_permille"]) == (
        0,
        1000,
        None,
    )
    await jobs(pool, clock)
    ended = await subscriptions.get_subscription(pool, sub.id)
    assert (ended.status, ended.ended_at) == ("cancelled", end)
    assert (await whys(pool, sub.id))[-1] == ("active", "cancelled")

    # Resubscribe: a new subscription, paid again.
    again = await subscriptions.resubscribe(
        pool, member, None, redirect_url="/vip", now=clock.now()
    )
    assert again.subscription.id != sub.id and again.checkout_url
    await pay(pool, clock, again.checkout_url)
    assert (await subscriptions.get_subscription(pool, again.subscription.id)).status == "active"
    await assert_ledger_clean(pool)


async def test_a_failed_renewal_recovers_within_grace(make_member, pool, clock):
    card = await make_member()
    member = await member_id_of(pool, card)
    sub = await subscribed(pool, clock, member)
    end = sub.current_period_end
    await sandbox.fail_next_recurring(pool, member)
    clock.set(end - RENEW_AHEAD)
    await jobs(pool, clock)
    in_grace = await subscriptions.get_subscription(pool, sub.id)
    assert (in_grace.status, in_grace.grace_until) == ("grace", end + GRACE)
    # Benefits continue during grace, past the period's end.
    assert await benefits.vip_multiplier(pool, member, end + timedelta(days=3)) == 1500
    # Retried daily: not again within the day, then again (paid this time).
    clock.set(end - RENEW_AHEAD + timedelta(hours=23))
    await jobs(pool, clock)
    assert (await subscriptions.get_subscription(pool, sub.id)).status == "grace"
    clock.set(end + timedelta(hours=1))
    await jobs(pool, clock)
    back = await subscriptions.get_subscription(pool, sub.id)
    assert back.status == "active" and back.grace_until is None
    assert back.current_period_end == add_months(end, 1)  # no gap, no days lost
    assert await whys(pool, sub.id) == [
        (None, "pending"),
        ("pending", "active"),
        ("active", "grace"),
        ("grace", "active"),
    ]
    attempts = await pool.fetch(
        "SELECT attempt, status FROM vip_charges WHERE subscription_id = $1 ORDER BY id", sub.id
    )
    assert [(a["attempt"], a["status"]) for a in attempts] == [
        (1, "paid"),
        (1, "failed"),
        (2, "paid"),
    ]


async def test_a_failed_renewal_lapses_when_grace_runs_out(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    member = await member_id_of(pool, card)
    sub = await subscribed(pool, clock, member)
    end = sub.current_period_end
    for day in range(8):  # the first charge and every daily retry fail
        await sandbox.fail_next_recurring(pool, member)
        clock.set(end - RENEW_AHEAD + timedelta(days=day, minutes=1))
        await jobs(pool, clock)
    failed = await pool.fetchval(
        "SELECT count(*) FROM vip_charges WHERE subscription_id = $1 AND status = 'failed'", sub.id
    )
    assert failed == 8  # one a day from a day before the end until grace_until
    grace_until = end + GRACE
    clock.set(grace_until - timedelta(seconds=1))
    await earn(client_for, shop, card)
    assert (await last_earn(pool, card))["vip_multiplier_permille"] == 1500
    clock.set(grace_until + timedelta(seconds=1))
    await earn(client_for, shop, card)
    assert (await last_earn(pool, card))["vip_multiplier_permille"] is None
    await jobs(pool, clock)
    lapsed = await subscriptions.get_subscription(pool, sub.id)
    assert (lapsed.status, lapsed.ended_at) == ("lapsed", grace_until)
    assert (await whys(pool, sub.id))[-1] == ("grace", "lapsed")
    with pytest.raises(NotFound):
        await subscriptions.cancel(pool, member, clock.now())
    await assert_ledger_clean(pool)


async def test_a_duplicated_notification_changes_nothing(make_member, pool, clock):
    card = await make_member()
    member = await member_id_of(pool, card)
    sub = await subscribed(pool, clock, member)
    charge = await pool.fetchval("SELECT id FROM vip_charges WHERE subscription_id = $1", sub.id)
    payment = await find_payment(pool, subscriptions.PURPOSE, str(charge))
    assert payment is not None and payment.status == "paid"
    before = await pool.fetchval("SELECT count(*) FROM vip_subscription_events")
    await handle_notification(pool, "sandbox", payment.provider_payment_id, clock.now())
    await handle_notification(pool, "sandbox", payment.provider_payment_id, clock.now())
    assert await pool.fetchval("SELECT count(*) FROM vip_subscription_events") == before
    assert (
        await pool.fetchval("SELECT count(*) FROM vip_periods WHERE subscription_id = $1", sub.id)
        == 1
    )
    again = await subscriptions.get_subscription(pool, sub.id)
    assert again.current_period_end == sub.current_period_end


async def test_a_failed_first_payment_abandons_and_one_open_subscription(make_member, pool, clock):
    card = await make_member()
    member = await member_id_of(pool, card)
    started = await subscriptions.subscribe(
        pool, member, PLAN, redirect_url="/vip", now=clock.now()
    )
    # Asking again returns the same checkout; another plan meanwhile is refused.
    same = await subscriptions.subscribe(pool, member, PLAN, redirect_url="/vip", now=clock.now())
    assert (same.subscription.id, same.checkout_url, same.created) == (
        started.subscription.id,
        started.checkout_url,
        False,
    )
    with pytest.raises(Conflict) as refused:
        await subscriptions.subscribe(
            pool, member, "vip_yearly", redirect_url="/vip", now=clock.now()
        )
    assert refused.value.code == "vip_checkout_open"
    assert started.checkout_url
    await pay(pool, clock, started.checkout_url, "cancel")
    gone = await subscriptions.get_subscription(pool, started.subscription.id)
    assert gone.status == "abandoned"
    assert await benefits.vip_multiplier(pool, member, clock.now()) is None
    yearly = await subscribed(pool, clock, member, "vip_yearly")
    assert yearly.current_period_end == add_months(clock.now(), 12)
    with pytest.raises(Conflict) as twice:
        await subscriptions.subscribe(pool, member, PLAN, redirect_url="/vip", now=clock.now())
    assert twice.value.code == "vip_already_subscribed"


async def test_the_monthly_bonus_is_paid_once_per_month(make_member, pool, clock):
    card = await make_member()
    member = await member_id_of(pool, card)
    await subscribed(pool, clock, member)
    first = await benefits.grant_monthly_bonus(pool, clock.now())
    assert first.points >= 100
    again = await benefits.grant_monthly_bonus(pool, clock.now())
    assert again.members == 0
    rewards = await pool.fetch(
        "SELECT points, memo FROM transactions WHERE member_id = $1 AND kind = 'reward'", member
    )
    assert [(r["points"], r["memo"]) for r in rewards] == [(100, benefits.MONTHLY_BONUS_MEMO)]
    await assert_ledger_clean(pool)


async def test_would_have_earned(make_partner, make_member, client_for, pool, clock):
    shop = await make_partner()
    card = await make_member()
    member = await member_id_of(pool, card)
    await earn(client_for, shop, card, 12_345)  # 123 points
    base = await benefits.base_points_since(pool, member, clock.now() + timedelta(seconds=1))
    assert base == 123
    assert benefits.extra_points(base, 1500) == 61


async def test_tier_and_vip_add_up_and_a_refund_takes_the_bonus_back(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    member = await member_id_of(pool, card)
    await pool.execute(
        "INSERT INTO member_tiers (member_id, tier_code, since) VALUES ($1, 'silver', $2)",
        member,
        clock.now(),
    )
    await subscribed(pool, clock, member)
    earned = await earn(client_for, shop, card)
    row = await last_earn(pool, card)
    # x1.25 Silver + x1.5 VIP = x1.75: 100 base points, 75 bonus.
    assert (row["points"], row["bonus_points"], row["multiplier_permille"]) == (100, 75, 1750)
    history = await pool.fetchval(
        "SELECT count(*) FROM lots WHERE bonus_for = $1 AND points_original = 75", earned.id
    )
    assert history == 1
    page = await member_history(pool, member, 5, None)
    assert page.items[0].bonus_label == "x1.75 Silver + VIP: +75 bonus points"
    async with client_for(shop) as client:
        await client.refund(earned.id, 10_000, "EUR")
    lot = await pool.fetchval("SELECT points_remaining FROM lots WHERE bonus_for = $1", earned.id)
    assert lot == 0
    await assert_ledger_clean(pool)


async def test_two_renewal_runs_at_once_charge_once(make_member, pool, clock):
    card = await make_member()
    member = await member_id_of(pool, card)
    sub = await subscribed(pool, clock, member)
    clock.set(sub.current_period_end - RENEW_AHEAD)
    await asyncio.gather(*(jobs(pool, clock) for _ in range(4)))
    charges = await pool.fetch(
        "SELECT status FROM vip_charges WHERE subscription_id = $1 ORDER BY id", sub.id
    )
    assert [c["status"] for c in charges] == ["paid", "paid"]
    assert (
        await pool.fetchval("SELECT count(*) FROM vip_periods WHERE subscription_id = $1", sub.id)
        == 2
    )


async def _lottery(pool, clock, cap: int) -> int:
    now = clock.now()
    new = lotteries.NewLottery(
        name="VIP draw",
        rules="One free ticket per member; VIP members get their plan's extra free tickets.",
        ticket_price_points=10,
        tickets_per_member_max=cap,
        sales_open_at=now - timedelta(minutes=1),
        sales_close_at=now + timedelta(hours=1),
        draw_at=now + timedelta(hours=1),
        prizes=[lotteries.NewPrize(points=50)],
    )
    made = await transaction(pool, lambda conn: lotteries.create_lottery(conn, new, now))
    return int(made.lottery_id)


async def free_tickets(pool, lottery: int, member: int) -> list[int]:
    rows = await pool.fetch(
        "SELECT free_index FROM lottery_tickets WHERE lottery_id = $1 AND member_id = $2"
        " AND NOT paid ORDER BY number",
        lottery,
        member,
    )
    return [r["free_index"] for r in rows]


async def test_vip_members_take_their_extra_free_lottery_tickets_under_the_cap(
    make_member, pool, clock
):
    vip = await member_id_of(pool, await make_member())
    plain = await member_id_of(pool, await make_member())
    await subscribed(pool, clock, vip)
    lottery = await _lottery(pool, clock, cap=5)
    first = await lotteries.take_free_ticket(pool, vip, lottery, clock.now())
    again = await lotteries.take_free_ticket(pool, vip, lottery, clock.now())
    assert again.replayed and again.number == first.number
    assert await free_tickets(pool, lottery, vip) == [0, 1]  # the plan's one extra
    await lotteries.take_free_ticket(pool, plain, lottery, clock.now())
    assert await free_tickets(pool, lottery, plain) == [0]
    # The cap counts free tickets too: with room for one, the extra is not given.
    capped = await _lottery(pool, clock, cap=1)
    await lotteries.take_free_ticket(pool, vip, capped, clock.now())
    assert await free_tickets(pool, capped, vip) == [0]


async def test_concurrent_subscribes_make_one_and_concurrent_bonus_runs_pay_once(
    make_member, pool, clock
):
    member = await member_id_of(pool, await make_member())
    results = await asyncio.gather(
        *(
            subscriptions.subscribe(pool, member, PLAN, redirect_url="/vip", now=clock.now())
            for _ in range(8)
        ),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, subscriptions.Started)]
    assert made and {r.subscription.id for r in made} == {made[0].subscription.id}
    assert all(
        isinstance(r, subscriptions.Started) or getattr(r, "code", "") == "vip_checkout_open"
        for r in results
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM vip_subscriptions WHERE member_id = $1", member)
        == 1
    )
    assert made[0].checkout_url
    await pay(pool, clock, made[0].checkout_url)
    runs = await asyncio.gather(
        *(benefits.grant_monthly_bonus(pool, clock.now()) for _ in range(3))
    )
    assert sum(r.members for r in runs) >= 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE member_id = $1 AND kind = 'reward'", member
        )
        == 1
    )
    await assert_ledger_clean(pool)


async def test_closing_the_account_ends_the_subscription_and_the_export_shows_it(
    make_member, pool, clock
):
    member = await member_id_of(pool, await make_member())
    sub = await subscribed(pool, clock, member)
    exported = await export_member_data(pool, member)
    assert exported is not None
    assert [(v["plan"], v["status"], len(v["periods"])) for v in exported["vip_subscriptions"]] == [
        (PLAN, "active", 1)
    ]
    await delete_account(pool, member, confirmation=ACCOUNT_DELETION_CONFIRMATION, now=clock.now())
    ended = await subscriptions.get_subscription(pool, sub.id)
    assert ended.status == "cancelled" and ended.ended_at == clock.now()
    assert (await whys(pool, sub.id))[-1] == ("active", "cancelled")
    clock.set(sub.current_period_end)
    await jobs(pool, clock)  # no renewal for a closed account
    assert (
        await pool.fetchval("SELECT count(*) FROM vip_charges WHERE subscription_id = $1", sub.id)
        == 1
    )


async def test_migration_0012_upgrades_and_downgrades_cleanly(pg_server):
    import asyncpg
    from alembic import command

    from api.db import migrate
    from api.db.embedded import ensure_database

    name = "kring_vip_migration"
    await ensure_database(pg_server.admin_url, name)
    url = pg_server.url_for(name)
    config = migrate.alembic_config(url)

    async def shape() -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT indexname AS name, indexdef AS d FROM pg_indexes"
                " WHERE indexname = 'lottery_tickets_one_free'"
                " UNION ALL SELECT table_name, string_agg(column_name, ',' ORDER BY column_name)"
                " FROM information_schema.columns"
                " WHERE table_name IN ('transactions', 'lottery_tickets')"
                " OR table_name LIKE 'vip_%' GROUP BY table_name"
            )
            return {r["name"]: r["d"] for r in rows}
        finally:
            await conn.close()

    await asyncio.to_thread(command.upgrade, config, "0011")
    before = await shape()
    await asyncio.to_thread(command.upgrade, config, "0012")
    after = await shape()
    assert "free_index" in after["lottery_tickets_one_free"]
    assert "vip_multiplier_permille" in after["transactions"] and "vip_periods" in after
    await asyncio.to_thread(command.downgrade, config, "0011")
    assert await shape() == before
    await asyncio.to_thread(command.upgrade, config, "0012")
    assert await shape() == after
