"""Many tills at once: random earns, holds, captures, voids, burns and refunds
for a few members run concurrently. Afterwards every member's balances equal
what the acknowledged answers imply, and the ledger check (at module end)
finds nothing wrong."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from api.ledger.lots import release_due
from partners.client import PartnerApiError, Transaction
from tests.conftest import balances

MEMBERS = 4
OPERATIONS = 240
WAVE = 24


async def test_random_concurrent_operations_keep_every_point(
    make_partner, make_member, client_for, pool, clock
):
    rng = random.Random(20261125)
    partners = [await make_partner(return_window_days=0) for _ in range(3)]
    cards = [await make_member() for _ in range(MEMBERS)]
    clients = [client_for(p) for p in partners]
    for client in clients:
        await client.access_token()
    earns: dict[str, list[Transaction]] = defaultdict(list)
    holds: dict[str, list[tuple[int, Transaction]]] = defaultdict(list)
    outcomes: dict[str, int] = defaultdict(int)

    async def one(step: int) -> None:
        card = rng.choice(cards)
        index = rng.randrange(len(clients))
        client = clients[index]
        roll = rng.random()
        try:
            if roll < 0.35 or not earns[card]:
                earns[card].append(
                    await client.earn(
                        card_number=card, amount_cents=rng.randint(100, 20_000), currency="EUR"
                    )
                )
            elif roll < 0.5:
                await client.burn(card_number=card, points=rng.randint(1, 60))
            elif roll < 0.65:
                holds[card].append(
                    (index, await client.authorize(card_number=card, points=rng.randint(1, 60)))
                )
            elif roll < 0.8 and holds[card]:
                owner, hold = holds[card].pop(rng.randrange(len(holds[card])))
                if rng.random() < 0.5:
                    await clients[owner].capture(hold.id, points=rng.randint(1, hold.points))
                else:
                    await clients[owner].void(hold.id)
            else:
                await _refund_somewhere(clients, rng.choice(earns[card]), rng)
            outcomes["ok"] += 1
        except PartnerApiError as exc:
            outcomes[exc.code] += 1

    # Waves of concurrent requests, so later waves find points and holds to act on;
    # pending points are released between waves while the tills keep going.
    for wave in range(0, OPERATIONS, WAVE):
        await asyncio.gather(
            release_due(pool, clock.now()), *(one(step) for step in range(wave, wave + WAVE))
        )
    await release_due(pool, clock.now())
    for client in clients:
        await client.aclose()

    assert outcomes["ok"] > OPERATIONS // 2
    kinds = {
        (r["kind"], r["status"])
        for r in await pool.fetch(
            "SELECT DISTINCT t.kind, t.status FROM transactions t JOIN members m ON m.id = t.member_id"
            " WHERE m.card_number = ANY($1::text[])",
            cards,
        )
    }
    assert {
        ("earn", "available"),
        ("burn", "captured"),
        ("burn", "voided"),
        ("refund", "completed"),
    } <= kinds
    assert set(outcomes) <= {
        "ok",
        "insufficient_points",
        "already_refunded",
        "refund_exceeds_purchase",
        "transaction_not_found",
    }
    for card in cards:
        assert await _implied_balance(pool, card) == sum((await balances(pool, card)).values())


async def _refund_somewhere(clients, earn: Transaction, rng: random.Random) -> None:
    # Only the partner that made the sale can refund it; the others get 404.
    for client in clients:
        try:
            await client.refund(
                earn.id, amount_cents=rng.randint(1, earn.amount_cents or 1), currency="EUR"
            )
            return
        except PartnerApiError as exc:
            if exc.code != "transaction_not_found":
                raise


async def _implied_balance(pool, card: str) -> int:
    """available + pending + held + debt, from the transactions alone (tier
    bonus included: members here earn enough to be upgraded)."""
    row = await pool.fetchrow(
        """
        SELECT coalesce(sum(t.points + t.bonus_points) FILTER (WHERE t.kind = 'earn'), 0)
             - coalesce(sum(t.points + t.bonus_points) FILTER (WHERE t.kind = 'refund'), 0)
             - coalesce(sum(t.points_captured) FILTER (WHERE t.kind = 'burn' AND t.status = 'captured'), 0)
             AS implied
        FROM transactions t JOIN members m ON m.id = t.member_id WHERE m.card_number = $1
        """,
        card,
    )
    return int(row["implied"])
