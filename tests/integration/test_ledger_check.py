"""`ledger check` names the rows that break an invariant."""

from __future__ import annotations

import pytest

from api.ledger.check import check_ledger
from api.ledger.entries import LedgerInvariantError, Postings


def test_postings_refuse_to_be_unbalanced() -> None:
    postings = Postings().add(1, 10).add(2, -9)
    with pytest.raises(LedgerInvariantError):
        postings.params()
    assert Postings().move(1, 2, 5).params()["line_amounts"] == [-5, 5]


@pytest.mark.parametrize(
    ("corruption", "expected"),
    [
        (
            "UPDATE accounts SET balance = balance + 1 WHERE id = (SELECT account_id FROM postings LIMIT 1)",
            "account balance differs from the sum of its postings",
        ),
        (
            "UPDATE postings SET amount = amount + 1 WHERE (entry_id, account_id) = (SELECT entry_id, account_id FROM postings LIMIT 1)",
            "entry does not balance per unit",
        ),
        (
            "UPDATE lots SET points_remaining = points_remaining - 1 WHERE points_remaining > 0 AND id = (SELECT min(id) FROM lots WHERE points_remaining > 0)",
            "lots do not add up to the member's pending or available balance",
        ),
    ],
)
async def test_check_fails_on_a_corrupted_row(
    make_partner, make_member, client_for, pool, corruption, expected
):
    creds = await make_partner()
    card = await make_member()
    async with client_for(creds) as client:
        await client.earn(card_number=card, amount_cents=5_000, currency="EUR")
    async with pool.acquire() as conn:
        assert await check_ledger(conn) == []
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(corruption)
            violations = await check_ledger(conn)
        finally:
            await tx.rollback()  # leave the module's ledger sound for its final check
        assert expected in [v.check for v in violations]
        assert all(v.rows for v in violations)
        assert await check_ledger(conn) == []
