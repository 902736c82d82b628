"""A repeated write moves nothing and returns the first answer."""

from __future__ import annotations

import asyncio

from tests.conftest import balances


async def test_twenty_concurrent_requests_with_one_key_make_one_entry(
    make_partner, make_member, client_for, pool, http
):
    creds = await make_partner()
    card = await make_member()
    async with client_for(creds) as client:
        token = await client.access_token()
    headers = {"authorization": f"Bearer {token}", "idempotency-key": "till-7-receipt-991"}
    body = {"card_number": card, "amount_cents": 2_500, "currency": "EUR", "receipt_ref": "991"}

    responses = await asyncio.gather(
        *(http.post("/partner/v1/earn", json=body, headers=headers) for _ in range(20))
    )

    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1  # every answer is the first answer
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 19
    txn_id = responses[0].json()["id"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE transaction_id = $1", txn_id
        )
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions t JOIN members m ON m.id = t.member_id WHERE m.card_number = $1",
            card,
        )
        == 1
    )
    assert (await balances(pool, card))["pending"] == 25


async def test_replay_returns_the_first_answer_even_after_state_changed(
    make_partner, make_member, client_for, pool, http
):
    creds = await make_partner()
    card = await make_member()
    async with client_for(creds) as client:
        token = await client.access_token()
        headers = {"authorization": f"Bearer {token}", "idempotency-key": "earn-1"}
        body = {"card_number": card, "amount_cents": 1_000, "currency": "EUR"}
        first = await http.post("/partner/v1/earn", json=body, headers=headers)
        await client.refund(first.json()["id"], amount_cents=1_000, currency="EUR")
        again = await http.post("/partner/v1/earn", json=body, headers=headers)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert (await balances(pool, card))["pending"] == 0


async def test_same_key_for_concurrent_one_step_burns_burns_once(
    make_partner, make_member, client_for, pool, http, clock
):
    from api.ledger.lots import release_due

    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
        await release_due(pool, clock.now())
        token = await client.access_token()
    headers = {"authorization": f"Bearer {token}", "idempotency-key": "burn-once"}
    body = {"card_number": card, "points": 40}
    responses = await asyncio.gather(
        *(http.post("/partner/v1/burns", json=body, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert await balances(pool, card) == {"available": 60, "pending": 0, "held": 0, "debt": 0}


async def test_an_earn_that_meets_a_deadlock_is_retried_under_the_lock(
    make_partner, make_member, client_for, pool, monkeypatch
):
    import asyncpg

    from api.ledger import earn

    real_apply = earn.apply_earn
    calls: list[bool] = []

    async def deadlock_once(conn, plan, claim):
        calls.append(conn.is_in_transaction())
        if len(calls) == 1:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        return await real_apply(conn, plan, claim)

    monkeypatch.setattr(earn, "apply_earn", deadlock_once)
    creds = await make_partner()
    card = await make_member()
    async with client_for(creds) as client:
        txn = await client.earn(card_number=card, amount_cents=3_000, currency="EUR")
    assert calls == [
        False,
        True,
    ]  # first unlocked and self-committing, then in the locked transaction
    assert txn.points == 30
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE transaction_id = $1", txn.id
        )
        == 1
    )
    assert (await balances(pool, card))["pending"] == 30
