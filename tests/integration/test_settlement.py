"""Settlement runs: statements per partner and day, lines rounded once, every
entry settled exactly once, the money side balanced; re-runs and races are
harmless. The clock is under the test's control."""

from __future__ import annotations

from datetime import timedelta

from api.ledger.lots import release_due
from api.settlement.periods import business_date, day_end
from api.settlement.run import settle_day, settle_due


async def lines_of(pool, statement_id):
    rows = await pool.fetch(
        "SELECT category, entries, points, amount_micros, amount_cents FROM statement_lines"
        " WHERE statement_id = $1",
        statement_id,
    )
    return {
        r["category"]: (r["entries"], r["points"], int(r["amount_micros"]), r["amount_cents"])
        for r in rows
    }


async def test_a_day_of_earns_and_burns_settles_into_one_statement_per_partner(
    make_partner, make_member, client_for, pool, clock
):
    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    cafe = await make_partner(redemption_price_micros=8_000)
    card = await make_member()
    day = business_date(clock.now())
    async with client_for(shop) as a, client_for(cafe) as b:
        await a.earn(card_number=card, amount_cents=12_345, currency="EUR")  # 123 points
        await release_due(pool, clock.now())
        await b.burn(card_number=card, points=100)
    clock.set(day_end(day) + timedelta(hours=1))
    result = await settle_day(pool, day, clock.now())
    assert result.created
    shop_statement = await pool.fetchrow(
        "SELECT id, net_cents, entries FROM statements WHERE partner_id = $1", shop.partner_id
    )
    cafe_statement = await pool.fetchrow(
        "SELECT id, net_cents, entries FROM statements WHERE partner_id = $1", cafe.partner_id
    )
    assert shop_statement["net_cents"] == -123
    assert (await lines_of(pool, shop_statement["id"]))["points_issued"] == (
        1,
        123,
        -1_230_000,
        -123,
    )
    assert cafe_statement["net_cents"] == 80
    assert (await lines_of(pool, cafe_statement["id"]))["points_redeemed"] == (1, 100, 800_000, 80)


async def test_statement_read_model_and_csv(make_partner, make_member, client_for, pool, clock):
    from api.settlement.statements import get_statement, list_statements, statement_csv

    shop = await make_partner(issuance_price_micros=10_000, return_window_days=0)
    card = await make_member()
    day = business_date(clock.now())
    async with client_for(shop) as a:
        await a.earn(card_number=card, amount_cents=1_000, currency="EUR")
    clock.set(day_end(day) + timedelta(hours=1))
    await settle_due(pool, clock.now())
    [statement] = await list_statements(pool, shop.partner_id, limit=10)
    assert statement == await get_statement(pool, shop.partner_id, statement.public_id)
    assert [line.category for line in statement.lines][0] == "points_issued"
    body = b"".join([chunk async for chunk in statement_csv(pool, statement)]).decode()
    print(body)
    assert "line,points_issued,,,,1,10,,-100000,-0.10" in body
