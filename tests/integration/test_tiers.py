"""Tiers: bonus points on the earn path, upgrades at earn time, refunds of
multiplied earns, the monthly review, settlement of bonus points and what
the member sees."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from api.coalition.member_views import member_history, member_summary
from api.engagement.tiers import review_month, review_tiers, tier_progress
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import SETTLEMENT_DELAY, business_date, day_end
from api.settlement.position import liability_now, programme_position
from api.settlement.run import settle_due
from tests.conftest import admin_headers, balances


async def member_id_of(pool, card: str) -> int:
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


async def set_tier(pool, card: str, code: str, at: datetime) -> None:
    await pool.execute(
        "INSERT INTO member_tiers (member_id, tier_code, since) VALUES ($1, $2, $3)"
        " ON CONFLICT (member_id) DO UPDATE SET tier_code = excluded.tier_code",
        await member_id_of(pool, card),
        code,
        at,
    )


async def tier_of(pool, card: str) -> str | None:
    return await pool.fetchval(
        "SELECT tier_code FROM member_tiers WHERE member_id = $1", await member_id_of(pool, card)
    )


async def promo_balance(pool) -> int:
    return await pool.fetchval(
        "SELECT sum(balance) FROM accounts WHERE kind = 'programme_promo'"
        " AND member_id IS NULL AND partner_id IS NULL"
    )


async def assert_ledger_clean(pool) -> None:
    async with pool.acquire() as conn:
        assert [v.describe() for v in await check_ledger(conn)] == []


async def test_bonus_goes_to_its_own_lot_at_price_zero_from_the_promo_budget(
    make_partner, make_member, client_for, pool, clock, http
):
    shop = await make_partner(issuance_price_micros=10_000)
    card = await make_member()
    await set_tier(pool, card, "silver", clock.now())
    promo_before = await promo_balance(pool)
    async with client_for(shop) as client:
        earn = await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        token = client._token  # the raw answer shows the bonus fields
    assert earn.points == 100  # the base points: what the partner pays for
    row = await pool.fetchrow(
        "SELECT points, bonus_points, multiplier_permille, tier_code FROM transactions"
        " WHERE id = $1",
        earn.id,
    )
    assert dict(row) == {
        "points": 100,
        "bonus_points": 25,
        "multiplier_permille": 1250,
        "tier_code": "silver",
    }
    lots = await pool.fetch(
        "SELECT transaction_id, bonus_for, points_remaining, price_micros, available_at,"
        " expires_at FROM lots WHERE transaction_id = $1 OR bonus_for = $1"
        " ORDER BY bonus_for NULLS FIRST",
        earn.id,
    )
    base, bonus = lots
    assert (base["transaction_id"], base["points_remaining"], base["price_micros"]) == (
        earn.id,
        100,
        10_000,
    )
    assert (bonus["bonus_for"], bonus["points_remaining"], bonus["price_micros"]) == (
        earn.id,
        25,
        0,
    )
    assert (bonus["available_at"], bonus["expires_at"]) == (
        base["available_at"],
        base["expires_at"],
    )
    assert await promo_balance(pool) == promo_before - 25
    assert (await balances(pool, card))["pending"] == 125
    answer = await http.get(
        f"/partner/v1/transactions/{earn.id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["bonus_points"], answer.json()["multiplier_permille"]) == (25, 1250)
    await assert_ledger_clean(pool)


async def test_an_upgrade_applies_from_the_next_earn(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    async with client_for(shop) as client:
        first = await client.earn(card_number=card, amount_cents=100_000, currency="EUR")
        assert await tier_of(pool, card) == "silver"  # 1,000 qualifying points
        second = await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
    bonuses = await pool.fetch(
        "SELECT id, bonus_points, multiplier_permille FROM transactions WHERE id = ANY($1)",
        [first.id, second.id],
    )
    by_id = {r["id"]: (r["bonus_points"], r["multiplier_permille"]) for r in bonuses}
    assert by_id[first.id] == (0, 1000)  # earned as Bronze
    assert by_id[second.id] == (25, 1250)  # the upgrade applies from here
    history = await pool.fetch(
        "SELECT from_tier, to_tier, reason, qualifying_points FROM tier_history"
        " WHERE member_id = $1",
        await member_id_of(pool, card),
    )
    assert [tuple(r) for r in history] == [("bronze", "silver", "upgrade", 1000)]
    await assert_ledger_clean(pool)


async def test_a_refund_reverses_base_and_the_unspent_bonus_only(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(return_window_days=0)
    card = await make_member()
    await set_tier(pool, card, "silver", clock.now())
    promo_before = await promo_balance(pool)
    async with client_for(shop) as client:
        earn = await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        await release_due(pool, clock.now())
        assert (await balances(pool, card))["available"] == 125
        half = await client.refund(earn.id, 5_000, "EUR")
        assert half.points == 50
        assert (
            await pool.fetchval("SELECT bonus_points FROM transactions WHERE id = $1", half.id)
            == 12
        )  # 25 x 50 % rounded down
        answer = await pool.fetchval(
            "SELECT response_body FROM idempotency_keys WHERE partner_id = $1"
            " AND convert_from(response_body, 'UTF8')::jsonb ->> 'id' = $2",
            shop.partner_id,
            str(half.id),
        )
        assert json.loads(answer)["bonus_points"] == 12  # an integer in the answer too
        assert (await balances(pool, card))["available"] == 63
        await client.burn(card_number=card, points=63)  # the rest of base and bonus: spent
        rest = await client.refund(earn.id, 5_000, "EUR")
    assert rest.points == 50 and rest.debt_points == 50  # base points spent: debt
    assert await pool.fetchval("SELECT bonus_points FROM transactions WHERE id = $1", rest.id) == 0
    assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": -50}
    assert await promo_balance(pool) == promo_before - 25 + 12  # spent bonus is not clawed back
    await assert_ledger_clean(pool)


async def test_downgrades_happen_only_at_the_monthly_review(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    quiet, busy = await make_member(), await make_member()
    now = clock.now()
    await set_tier(pool, quiet, "gold", now)
    await set_tier(pool, busy, "gold", now)
    async with client_for(shop) as client:
        await client.earn(card_number=busy, amount_cents=120_000, currency="EUR")  # 1,200
    first_of_next_month = datetime(
        now.year + (now.month == 12), now.month % 12 + 1, 1, 9, tzinfo=UTC
    )
    mid_month = first_of_next_month + timedelta(days=14)
    assert review_month(mid_month) is None
    assert await review_tiers(pool, mid_month) is None
    assert await tier_of(pool, quiet) == "gold"
    # 1 a.m. in Amsterdam on the 1st is still the 31st in UTC: the review is Amsterdam's.
    assert review_month(first_of_next_month - timedelta(hours=8, minutes=30)) is not None
    moved = await review_tiers(pool, first_of_next_month)
    assert moved is not None and moved >= 2
    assert await tier_of(pool, quiet) == "bronze"
    assert await tier_of(pool, busy) == "silver"  # down to what 1,200 points support
    assert await review_tiers(pool, first_of_next_month + timedelta(hours=1)) is None  # once
    history = await pool.fetch(
        "SELECT from_tier, to_tier, reason FROM tier_history WHERE member_id = $1",
        await member_id_of(pool, busy),
    )
    assert [tuple(r) for r in history] == [("gold", "silver", "review")]
    await assert_ledger_clean(pool)


async def test_member_view_shows_tier_progress_and_the_bonus(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner()
    card = await make_member()
    member_id = await member_id_of(pool, card)
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=40_000, currency="EUR")
    progress = await tier_progress(pool, member_id, clock.now())
    assert (progress.name, progress.qualifying_points) == ("Bronze", 400)
    assert (progress.next_tier_name, progress.points_to_next_tier) == ("Silver", 600)
    await set_tier(pool, card, "silver", clock.now())
    async with client_for(shop) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
    summary = await member_summary(pool, member_id, clock.now())
    assert summary is not None
    assert summary.tier == "Silver"
    assert summary.tier_progress.qualifying_points == 500
    assert (summary.tier_progress.next_tier_name, summary.tier_progress.points_to_next_tier) == (
        "Gold",
        4_500,
    )
    page = await member_history(pool, member_id, 10, None)
    assert page.items[0].bonus_label == "x1.25 Silver: +25 bonus points"


async def test_settlement_charges_base_points_only_and_float_equals_liability(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    cafe = await make_partner(redemption_price_micros=8_000)
    card = await make_member()
    await set_tier(pool, card, "gold", clock.now())
    day = business_date(clock.now())
    async with client_for(shop) as a, client_for(cafe) as b:
        earn = await a.earn(card_number=card, amount_cents=20_000, currency="EUR")  # 200 + 100
        await release_due(pool, clock.now())
        await b.burn(card_number=card, points=250)
        await a.refund(earn.id, 5_000, "EUR")  # 50 base, 25 bonus back
    clock.set(day_end(day) + SETTLEMENT_DELAY + timedelta(minutes=1))
    await settle_due(pool, clock.now())
    lines = {
        r["category"]: (r["points"], int(r["amount_micros"]))
        for r in await pool.fetch(
            "SELECT l.category, l.points, l.amount_micros FROM statement_lines l"
            " JOIN statements s ON s.id = l.statement_id WHERE s.partner_id = $1",
            shop.partner_id,
        )
    }
    assert lines["points_issued"] == (200, -2_000_000)  # base points only
    position = await programme_position(pool)
    now_liability = await liability_now(pool)
    assert position.liability == now_liability  # bonus points counted, worth 0
    assert position.float_cents * 10_000 == now_liability.micros
    await assert_ledger_clean(pool)


async def test_admin_lists_and_changes_tiers_audited_by_role(http, pool, clock):
    marketing = await admin_headers(pool, clock, "marketing", "tiers-m@kring.test")
    support = await admin_headers(pool, clock, "support", "tiers-s@kring.test")
    listed = await http.get("/admin/v1/tiers", headers=marketing)
    assert listed.status_code == 200, listed.text
    assert [
        (t["code"], t["threshold_points"], t["multiplier_permille"]) for t in listed.json()
    ] == [
        ("bronze", 0, 1000),
        ("silver", 1000, 1250),
        ("gold", 5000, 1500),
    ]
    body = {"name": "Silver", "threshold_points": 1500, "multiplier_permille": 1300, "position": 2}
    refused = await http.put("/admin/v1/tiers/silver", json=body, headers=support)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden_role"
    unordered = await http.put(
        "/admin/v1/tiers/silver", json={**body, "threshold_points": 6000}, headers=marketing
    )
    assert unordered.status_code == 422 and unordered.json()["code"] == "invalid_tier"
    changed = await http.put("/admin/v1/tiers/silver", json=body, headers=marketing)
    assert changed.status_code == 200, changed.text
    assert changed.json()["multiplier_permille"] == 1300
    audit = await pool.fetchrow(
        "SELECT action, subject FROM admin_audit_log ORDER BY id DESC LIMIT 1"
    )
    assert tuple(audit) == ("tier.change", "tier:silver")
    missing = await http.put("/admin/v1/tiers/platinum", json=body, headers=marketing)
    assert missing.status_code == 404 and missing.json()["code"] == "tier_not_found"
    # Put it back: the other tests in this module count on the seeded tiers.
    restore = {**body, "threshold_points": 1000, "multiplier_permille": 1250}
    assert (await http.put("/admin/v1/tiers/silver", json=restore, headers=marketing)).is_success
