"""Rewards: points the programme or a sponsoring partner gives a member for
what they did (a challenge met, a friend referred), and taking them back.

A reward is a transaction of the member's with no partner at the till
(`kind` 'reward'). Who pays:

- the programme's promo budget (`sponsor_id` None): the points sit in a lot
  priced 0, like a tier bonus: nobody paid for them, and settlement shows
  their cost when they are redeemed (negative spread);
- a sponsoring partner: the points come from the partner's points-issued
  account at its issuance price, and the journal entry carries the partner,
  so settlement files it in the partner's statement (the sponsored_rewards
  line) and the partner pays for them as for points issued at its till.

A reversal (`kind` 'reward_reversal', `original_id` the reward) takes the
points back like a refund takes back an earn: first from the reward's own
lot, then the member's other available points (earliest expiry first,
traced in `refund_lots` so settlement values them at their lots' prices),
and what the member has already spent becomes debt that later earnings
repay. The points go back to whoever paid; a sponsor is credited in full.

Both run in the caller's transaction and lock the member's accounts first
(the ledger's lock order): the caller keeps its own exactly-once record
(e.g. `challenge_rewards`) in the same transaction. A caller paying several
members in one transaction locks all of them first (`lock_members`) and
pays them from one payer and one `shard`, so it holds one non-member row
and cannot deadlock with an earn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.clock import add_months
from api.db.sql import Query
from api.errors import Conflict, NotFound
from api.ids import new_transaction_id
from api.ledger.accounts import MemberAccounts, lock_member, partner_account, shard_for
from api.ledger.entries import (
    ENTRY_CTES,
    ENTRY_RESULT,
    LedgerInvariantError,
    Postings,
    entry_params,
    require_moved,
)
from api.ledger.idempotency import go_cte
from api.ledger.lots import TAKE_FIFO_CTES
from api.ledger.terms import POINTS_EXPIRE_AFTER_MONTHS

MEMO_LENGTH_MAX = 200


@dataclass(frozen=True, slots=True)
class _Payer:
    account_id: int
    price_micros: int


async def _payer(conn: asyncpg.Connection, sponsor_id: int | None, shard: int) -> _Payer:
    """The account the points come from (and go back to), and their price.
    Any shard is correct; a caller paying many rewards in one transaction
    uses one shard for all of them, so that it holds a single payer row."""
    if sponsor_id is None:
        promo = await conn.fetchval(
            "SELECT id FROM accounts WHERE kind = 'programme_promo' AND member_id IS NULL"
            " AND partner_id IS NULL AND shard = $1",
            shard,
        )
        if promo is None:
            raise LookupError("no programme promo account")
        return _Payer(int(promo), 0)
    price = await conn.fetchval(
        "SELECT issuance_price_micros FROM partners WHERE id = $1", sponsor_id
    )
    if price is None:
        raise NotFound("there is no such partner", code="partner_not_found")
    account = await partner_account(conn, sponsor_id, "partner_points_issued", shard)
    return _Payer(account, int(price))


async def _active_member(conn: asyncpg.Connection, member_id: int) -> MemberAccounts:
    member = await lock_member(conn, member_id)
    if member is None:
        raise NotFound("there is no such member", code="member_not_found")
    return member


_PAY = Query(f"""
WITH {go_cte(False)},
txn AS (
    INSERT INTO transactions
        (id, partner_id, member_id, kind, status, points, price_micros, occurred_at, created_at,
         finished_at, sponsor_id, memo)
    VALUES (:txn_id::uuid, NULL, :member_id::bigint, 'reward', 'completed', :points::bigint,
            :price_micros::integer, :booked_at::timestamptz, :booked_at::timestamptz,
            :booked_at::timestamptz, :sponsor_id::bigint, :memo::text)
    RETURNING id
),
lot AS (
    INSERT INTO lots
        (member_id, transaction_id, state, points_original, points_remaining, available_at,
         expires_at, price_micros)
    SELECT :member_id::bigint, txn.id, 'available', :points::bigint, :points::bigint,
           :booked_at::timestamptz, :expires_at::timestamptz, :price_micros::integer
    FROM txn
),
{ENTRY_CTES}
SELECT {ENTRY_RESULT}
""")


async def pay_reward(
    conn: asyncpg.Connection,
    *,
    member_id: int,
    points: int,
    sponsor_id: int | None,
    memo: str,
    now: datetime,
    shard: int | None = None,
) -> UUID:
    """Give the member `points`, available at once; returns the reward's id."""
    if points <= 0:
        raise ValueError("a reward is a positive number of points")
    if not 0 < len(memo) <= MEMO_LENGTH_MAX:
        raise ValueError(f"a reward's memo is 1 to {MEMO_LENGTH_MAX} characters")
    member = await _active_member(conn, member_id)
    if member.status != "active":
        raise Conflict("this member account is not active", code="member_not_active")
    txn_id = new_transaction_id()
    payer = await _payer(conn, sponsor_id, shard_for(txn_id.int) if shard is None else shard)
    postings = Postings(first=frozenset(member.account_ids)).move(
        payer.account_id, member.available_id, points
    )
    row = await conn.fetchrow(
        _PAY.text,
        *_PAY.args(
            {
                "txn_id": txn_id,
                "member_id": member_id,
                "points": points,
                "price_micros": payer.price_micros,
                "sponsor_id": sponsor_id,
                "memo": memo,
                "expires_at": add_months(now, POINTS_EXPIRE_AFTER_MONTHS),
                **entry_params(
                    postings,
                    kind="reward",
                    booked_at=now,
                    transaction_id=txn_id,
                    partner_id=sponsor_id,
                    member_id=member_id,
                    price_micros=payer.price_micros,
                ),
            }
        ),
    )
    require_moved(row, postings)
    return txn_id


_REWARD = """
SELECT t.member_id, t.points, t.price_micros, t.sponsor_id, t.memo,
       l.id AS lot_id, l.state AS lot_state, coalesce(l.points_remaining, 0) AS lot_remaining,
       EXISTS (SELECT FROM transactions r WHERE r.original_id = t.id
               AND r.kind = 'reward_reversal') AS reversed
FROM transactions t
LEFT JOIN lots l ON l.transaction_id = t.id
WHERE t.id = $1 AND t.kind = 'reward'
"""

_REVERSE = Query(f"""
WITH {go_cte(False)},
reversal AS (
    INSERT INTO transactions
        (id, partner_id, member_id, kind, status, points, debt_points, price_micros, original_id,
         occurred_at, created_at, finished_at, sponsor_id, memo)
    VALUES (:reversal_id::uuid, NULL, :member_id::bigint, 'reward_reversal', 'completed',
            :points::bigint, :debt_points::bigint, :price_micros::integer, :reward_id::uuid,
            :booked_at::timestamptz, :booked_at::timestamptz, :booked_at::timestamptz,
            :sponsor_id::bigint, :memo::text)
),
own_lot AS (
    UPDATE lots SET points_remaining = points_remaining - :from_lot::bigint
    FROM go
    WHERE id = :skip_lot_id::bigint AND :from_lot::bigint > 0
    RETURNING :from_lot::bigint AS points
),
{TAKE_FIFO_CTES},
-- Which other lots gave points: settlement values them at their price.
traced AS (
    INSERT INTO refund_lots (transaction_id, lot_id, points)
    SELECT :reversal_id::uuid, take.id, take.points FROM take, go WHERE take.points > 0
),
{ENTRY_CTES}
SELECT {ENTRY_RESULT},
       (SELECT coalesce(sum(points), 0) FROM own_lot)
           + (SELECT coalesce(sum(points), 0) FROM consumed) AS taken
""")


async def reverse_reward(
    conn: asyncpg.Connection, reward_id: UUID, now: datetime, shard: int | None = None
) -> UUID:
    """Take a reward back in full; returns the reversal's id. A reward is
    reversed at most once (`reward_already_reversed`)."""
    member_id = await conn.fetchval(
        "SELECT member_id FROM transactions WHERE id = $1 AND kind = 'reward'", reward_id
    )
    if member_id is None:
        raise NotFound("there is no such reward", code="reward_not_found")
    member = await _active_member(conn, int(member_id))
    reward = await conn.fetchrow(_REWARD, reward_id)  # read under the member's lock
    if reward["reversed"]:
        raise Conflict("this reward was already taken back", code="reward_already_reversed")
    points = int(reward["points"])
    lot_remaining = int(reward["lot_remaining"])
    lot_is_available = reward["lot_state"] == "available"
    from_lot = min(points, lot_remaining)
    others_available = member.available - (lot_remaining if lot_is_available else 0)
    from_available = min(points - from_lot, others_available)
    debt = points - from_lot - from_available
    reversal_id = new_transaction_id()
    payer = await _payer(
        conn, reward["sponsor_id"], shard_for(reversal_id.int) if shard is None else shard
    )
    lot_account = member.available_id if lot_is_available else member.pending_id
    postings = (
        Postings(first=frozenset(member.account_ids))
        .add(payer.account_id, points)
        .add(lot_account, -from_lot)
        .add(member.available_id, -from_available)
        .add(member.debt_id, -debt)
    )
    row = await conn.fetchrow(
        _REVERSE.text,
        *_REVERSE.args(
            {
                "reversal_id": reversal_id,
                "reward_id": reward_id,
                "member_id": member.member_id,
                "points": points,
                "debt_points": debt,
                "price_micros": reward["price_micros"],
                "sponsor_id": reward["sponsor_id"],
                "memo": reward["memo"],
                "from_lot": from_lot,
                "skip_lot_id": reward["lot_id"],
                "take_points": from_available,
                **entry_params(
                    postings,
                    kind="reward_reversal",
                    booked_at=now,
                    transaction_id=reversal_id,
                    partner_id=reward["sponsor_id"],
                    member_id=member.member_id,
                    price_micros=reward["price_micros"],
                ),
            }
        ),
    )
    require_moved(row, postings)
    if row["taken"] != from_lot + from_available:
        raise LedgerInvariantError(f"reversal of reward {reward_id} did not add up")
    return reversal_id
