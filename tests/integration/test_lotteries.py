"""Lotteries: tickets within the cap and the balance under concurrency, the
free ticket, a draw that runs exactly once and that anyone can verify with the
stand-alone script, cancellation refunds, and settlement staying exact."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from api.db.pool import transaction
from api.engagement import lotteries as lots
from api.engagement import lottery_draw
from api.ledger.check import check_ledger
from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day
from tests.conftest import balances

ROOT = Path(__file__).resolve().parents[2]
VERIFY = ROOT / "tools" / "verify_lottery_draw.py"


async def member_id(pool, card):
    return await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)


@pytest.fixture(scope="module")
def funded(make_partner, make_member, client_for, pool, clock):
    """A member with `points` available points (from a partner at 1 cent a point)."""

    async def make(points: int) -> tuple[str, int]:
        shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
        card = await make_member()
        if points:
            async with client_for(shop) as client:
                await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
            await release_due(pool, clock.now())
        return card, await member_id(pool, card)

    return make


@pytest.fixture(scope="module")
def new_lottery(pool, clock):
    async def make(**overrides) -> int:
        now = clock.now()
        fields = {
            "name": "Spring draw",
            "rules": "One free ticket per member; paid tickets have the same odds.",
            "ticket_price_points": 10,
            "tickets_per_member_max": 5,
            "sales_open_at": now - timedelta(minutes=1),
            "sales_close_at": now + timedelta(hours=1),
            "draw_at": now + timedelta(hours=1),
            "prizes": [lots.NewPrize(points=500), lots.NewPrize(voucher_text="Cinema for two")],
            **overrides,
        }
        new = lots.NewLottery(**fields)
        made = await transaction(pool, lambda conn: lots.create_lottery(conn, new, now))
        return made.lottery_id

    return make


async def test_a_hundred_concurrent_purchases_respect_cap_and_balance(
    funded, new_lottery, pool, clock
):
    card, member = await funded(35)  # enough for three tickets of 10
    lottery = await new_lottery(tickets_per_member_max=5)
    now = clock.now()

    async def attempt(i: int):
        try:
            return await lots.buy_ticket(pool, member, lottery, f"k-{i}", now)
        except Exception as exc:  # the refusals are what this test counts
            return exc

    results = await asyncio.gather(*(attempt(i) for i in range(100)))
    bought = [r for r in results if isinstance(r, lots.Ticket)]
    codes = {getattr(r, "code", repr(r)) for r in results if not isinstance(r, lots.Ticket)}
    assert len(bought) == 3 and codes == {"insufficient_points"}
    assert sorted(t.number for t in bought) == [1, 2, 3]
    assert (await balances(pool, card))["available"] == 5
    # The cap: a richer member stops at five, paid and free together.
    card2, member2 = await funded(1_000)
    await lots.take_free_ticket(pool, member2, lottery, now)
    results = await asyncio.gather(
        *(
            asyncio.ensure_future(_try(lots.buy_ticket(pool, member2, lottery, f"c-{i}", now)))
            for i in range(100)
        )
    )
    assert sum(isinstance(r, lots.Ticket) for r in results) == 4
    assert {r.code for r in results if not isinstance(r, lots.Ticket)} == {"ticket_cap_reached"}
    assert (await balances(pool, card2))["available"] == 960


async def _try(coro):
    try:
        return await coro
    except Exception as exc:
        return exc


async def test_purchase_key_replays_and_free_ticket_is_once(funded, new_lottery, pool, clock):
    card, member = await funded(100)
    lottery = await new_lottery()
    now = clock.now()
    first = await lots.buy_ticket(pool, member, lottery, "same", now)
    again = await lots.buy_ticket(pool, member, lottery, "same", now)
    assert again.replayed and again.number == first.number
    assert (await balances(pool, card))["available"] == 90
    other = await new_lottery()
    with pytest.raises(lots.Conflict) as conflict:
        await lots.buy_ticket(pool, member, other, "same", now)
    assert conflict.value.code == "idempotency_conflict"
    free = await lots.take_free_ticket(pool, member, lottery, now)
    repeat = await lots.take_free_ticket(pool, member, lottery, now)
    assert not free.paid and repeat.replayed and repeat.number == free.number
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM lottery_tickets WHERE lottery_id = $1 AND member_id = $2 AND NOT paid",
            lottery,
            member,
        )
        == 1
    )
    # A free ticket takes no points and is in the same draw as paid ones.
    assert (await balances(pool, card))["available"] == 90


async def test_bad_inputs_get_problem_codes(funded, new_lottery, pool, clock):
    _, member = await funded(5)
    now = clock.now()
    cases = [
        ({"name": " "}, "invalid_name"),
        ({"ticket_price_points": 0}, "invalid_ticket_price"),
        ({"tickets_per_member_max": 0}, "invalid_ticket_cap"),
        ({"sales_close_at": now - timedelta(minutes=2)}, "invalid_sales_window"),
        ({"draw_at": now}, "invalid_draw_time"),
        ({"prizes": []}, "invalid_prizes"),
        ({"prizes": [lots.NewPrize(points=5, voucher_text="x")]}, "invalid_prizes"),
    ]
    for override, code in cases:
        with pytest.raises(lots.DomainError) as refused:
            await new_lottery(**override)
        assert refused.value.code == code, override
    lottery = await new_lottery()
    for call, code in [
        (lots.buy_ticket(pool, member, lottery, "x", now), "insufficient_points"),
        (lots.buy_ticket(pool, member, lottery, None, now), "idempotency_key_required"),
        (lots.buy_ticket(pool, member, 10**9, "y", now), "lottery_not_found"),
        (lots.take_free_ticket(pool, member, 10**9, now), "lottery_not_found"),
        (lots.cancel_lottery(pool, 10**9, now), "lottery_not_found"),
    ]:
        with pytest.raises(lots.DomainError) as refused:
            await call
        assert refused.value.code == code
    later = await new_lottery(sales_open_at=now + timedelta(minutes=5))
    with pytest.raises(lots.DomainError) as refused:
        await lots.take_free_ticket(pool, member, later, now)
    assert refused.value.code == "lottery_not_selling"


async def test_cancelling_refunds_every_paid_ticket_once(funded, new_lottery, pool, clock):
    card_a, a = await funded(50)
    card_b, b = await funded(50)
    lottery = await new_lottery()
    now = clock.now()
    for i in range(3):
        await lots.buy_ticket(pool, a, lottery, f"cancel-a-{i}", now)
    await lots.buy_ticket(pool, b, lottery, "cancel-b", now)
    await lots.take_free_ticket(pool, b, lottery, now)
    first, second = await asyncio.gather(
        lots.cancel_lottery(pool, lottery, now), lots.cancel_lottery(pool, lottery, now)
    )
    assert sorted([first.replayed, second.replayed]) == [False, True]
    assert first.points_refunded == second.points_refunded == 40
    assert first.tickets_refunded == second.tickets_refunded == 4
    assert (await balances(pool, card_a))["available"] == 50
    assert (await balances(pool, card_b))["available"] == 50
    with pytest.raises(lots.DomainError) as refused:
        await lots.buy_ticket(pool, a, lottery, "after-cancel", now)
    assert refused.value.code == "lottery_not_selling"


async def test_draw_runs_once_and_the_script_verifies_it(
    funded, new_lottery, pool, clock, http, tmp_path
):
    members = [await funded(30) for _ in range(4)]
    lottery = await new_lottery(
        prizes=[
            lots.NewPrize(points=100),
            lots.NewPrize(points=7),
            lots.NewPrize(voucher_text="Book"),
        ]
    )
    now = clock.now()
    for i, (_, member) in enumerate(members):
        await lots.buy_ticket(pool, member, lottery, f"draw-{i}", now)
        await lots.take_free_ticket(pool, member, lottery, now)
    too_early = await lots.advance_and_draw(pool, now)
    assert lottery not in too_early
    later = now + timedelta(hours=2)
    results = await asyncio.gather(
        lots.draw_lottery(pool, lottery, later), lots.draw_lottery(pool, lottery, later)
    )
    assert sorted(results) == [False, True]
    assert lottery not in await lots.advance_and_draw(pool, later)
    assert (
        await pool.fetchval("SELECT count(*) FROM lottery_winners WHERE lottery_id = $1", lottery)
        == 3
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'lottery_prize'"
            " AND id = (SELECT entry_id FROM lottery_draws WHERE lottery_id = $1)",
            lottery,
        )
        == 1
    )
    # The prizes were paid from the pool (40 ticket points) topped up by promo.
    won = await pool.fetch(
        "SELECT w.member_id, p.points FROM lottery_winners w JOIN lottery_prizes p"
        " USING (lottery_id, rank) WHERE w.lottery_id = $1 AND p.points IS NOT NULL",
        lottery,
    )
    assert sum(r["points"] for r in won) == 107

    response = await http.get(f"/lotteries/{lottery}/draw.json")
    assert response.status_code == 200
    published = tmp_path / "draw.json"
    published.write_bytes(response.content)
    ok = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(VERIFY), str(published)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    draw = json.loads(response.content)
    assert draw["seed_sha256"] == lottery_draw.seed_sha256(bytes.fromhex(draw["seed"])).hex()
    # Swap two tickets' holders: the digest and the recomputation both fail.
    tickets = draw["tickets"]
    tickets[0]["holder"], tickets[-1]["holder"] = tickets[-1]["holder"], tickets[0]["holder"]
    if tickets[0]["holder"] == tickets[-1]["holder"]:
        tickets.pop()
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(draw))
    bad = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(VERIFY), str(changed)], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout

    page = await http.get(f"/lotteries/{lottery}/verify")
    assert page.status_code == 200 and draw["seed"] in page.text


def test_draw_is_deterministic_and_uniform_enough():
    seed = bytes(range(32))
    tickets = [lottery_draw.DrawTicket(n, f"h{n % 3}") for n in range(1, 11)]
    first = lottery_draw.draw_winners(seed, tickets, [1, 2, 3])
    assert first == lottery_draw.draw_winners(seed, tickets, [3, 1, 2])
    assert len({w.ticket_number for w in first}) == 3  # a ticket wins at most once
    assert lottery_draw.draw_winners(seed, tickets[:2], [1, 2, 3])[-1].rank == 2
    counts = [0] * 7
    for rank in range(1, 7001):
        counts[lottery_draw.pick_index(seed, b"d" * 32, rank, 7)] += 1
    assert all(900 < c < 1100 for c in counts)


async def test_settlement_after_tickets_and_prizes_keeps_the_ledger_check_clean(
    funded, new_lottery, pool, clock
):
    card, member = await funded(200)
    lottery = await new_lottery(prizes=[lots.NewPrize(points=1_000)])
    now = clock.now()
    await lots.buy_ticket(pool, member, lottery, "settle-1", now)
    await lots.buy_ticket(pool, member, lottery, "settle-2", now)
    assert await lots.draw_lottery(pool, lottery, now + timedelta(hours=2))
    assert (await balances(pool, card))["available"] == 180 + 1_000
    clock.set(now + timedelta(hours=2))
    day = business_date(now)
    clock.set(day_end(day) + timedelta(hours=1))
    start = business_date(await pool.fetchval("SELECT min(booked_at) FROM journal_entries"))
    d = start
    while d <= day:
        await settle_day(pool, d, clock.now())
        d += timedelta(days=1)
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
    # The run's liability (points and value) is what the lots, holds and debt
    # say directly, prizes (lots priced 0) included.
    from api.settlement.position import liability_now, programme_position

    assert (await programme_position(pool)).liability == await liability_now(pool)
