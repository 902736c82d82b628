"""A repeat that arrives while its first attempt is still running (a client
that timed out and retried) waits behind it on the member's lock, and then
gets the first answer, not an error about the state the first attempt left.

Found by the bank fault test: a void retried after a client timeout was
answered 409 `authorization_voided` although that same void had been
applied; a burn repeated the same way was answered 422
`insufficient_points` while its points were gone: a 4xx for a write that
was applied."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from api.ledger.accounts import lock_member
from api.ledger.lots import release_due
from tests.conftest import balances

LOCK_WAIT_POLLS_MAX = 200


async def _both_queued_behind(
    pool: Any, requests: list[Any], member_id: int, http: Any
) -> list[httpx.Response]:
    """Hold the member's lock, send the requests, wait until they all wait
    for that lock, then let go: they run one after the other."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_member(conn, member_id)
        tasks = [asyncio.create_task(http.post(path, **kw)) for path, kw in requests]
        for _ in range(LOCK_WAIT_POLLS_MAX):
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= len(requests):
                break
            await asyncio.sleep(0.02)
        assert waiting >= len(requests)
    return list(await asyncio.gather(*tasks))


async def _funded(make_partner, make_member, client_for, pool, clock, points: int):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=points * 100, currency="EUR")
        token = await client.access_token()
    await release_due(pool, clock.now())
    member_id = await pool.fetchval("SELECT id FROM members WHERE card_number = $1", card)
    return card, member_id, {"authorization": f"Bearer {token}"}


async def test_a_burn_repeated_behind_its_first_attempt_gets_its_answer(
    make_partner, make_member, client_for, pool, clock, http
):
    card, member_id, auth = await _funded(make_partner, make_member, client_for, pool, clock, 10)
    body = {"card_number": card, "points": 10}
    headers = {**auth, "idempotency-key": "burn-all-ten"}
    first, repeat = await _both_queued_behind(
        pool, [("/partner/v1/burns", {"json": body, "headers": headers})] * 2, member_id, http
    )
    assert (first.status_code, repeat.status_code) == (201, 201), repeat.text
    assert first.content == repeat.content
    assert (await balances(pool, card))["available"] == 0
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM transactions WHERE member_id = $1 AND kind = 'burn'", member_id
        )
        == 1
    )


async def test_a_void_repeated_behind_its_first_attempt_gets_its_answer(
    make_partner, make_member, client_for, pool, clock, http
):
    card, member_id, auth = await _funded(make_partner, make_member, client_for, pool, clock, 10)
    held = await http.post(
        "/partner/v1/burns/authorize",
        json={"card_number": card, "points": 6},
        headers={**auth, "idempotency-key": "hold-6"},
    )
    assert held.status_code == 201
    path = f"/partner/v1/burns/{held.json()['id']}/void"
    headers = {**auth, "idempotency-key": "void-hold-6"}
    first, repeat = await _both_queued_behind(
        pool, [(path, {"headers": headers})] * 2, member_id, http
    )
    assert (first.status_code, repeat.status_code) == (200, 200), repeat.text
    assert first.content == repeat.content
    assert first.json()["status"] == "voided"
    assert await balances(pool, card) == {"available": 10, "pending": 0, "held": 0, "debt": 0}
