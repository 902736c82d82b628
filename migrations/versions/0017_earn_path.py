"""Earn path: 64 shards per partner points account and promo budget (issue 8).

Under 32 concurrent earns the balance update of a partner's points shard
waited on the shard's row lock (held until the earn commits) for 1.5 ms on
average and 4.8 ms at p90, most of the earn statement's time. Four times the
shards makes two concurrent earns at one partner meet on one row a quarter
as often. Any shard is a full ledger account and every figure sums over
shards, so adding rows changes no balance. `api/ledger/accounts.py`
(PARTNER_ACCOUNT_SHARDS) picks shards from 0 to 63 from now on.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SHARDS_BEFORE = 16
SHARDS = 64

UPGRADE = f"""
INSERT INTO accounts (kind, unit, partner_id, shard)
SELECT k.kind, 'PTS', p.id, s
FROM partners p,
     unnest(ARRAY['partner_points_issued', 'partner_points_redeemed']) AS k(kind),
     generate_series({SHARDS_BEFORE}, {SHARDS - 1}) s
ON CONFLICT DO NOTHING;
INSERT INTO accounts (kind, unit, shard)
SELECT 'programme_promo', 'PTS', s FROM generate_series({SHARDS_BEFORE}, {SHARDS - 1}) s
ON CONFLICT DO NOTHING
"""

# Shards that were never written go; one with postings stays (the code
# before this revision sums every shard, so it is still counted).
DOWNGRADE = f"""
DELETE FROM accounts a
WHERE a.shard >= {SHARDS_BEFORE}
  AND a.kind IN ('partner_points_issued', 'partner_points_redeemed', 'programme_promo')
  AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.account_id = a.id)
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds one command.
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
