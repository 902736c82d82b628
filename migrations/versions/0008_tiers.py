"""Tiers: definitions, members' tiers and their history, earn multipliers (issue 5).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
-- Tier definitions. Tiers are ordered by their qualifying threshold; the
-- lowest (threshold 0) is every member's tier until they qualify for more.
CREATE TABLE tiers (
    code                 text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name                 text NOT NULL CHECK (name <> '' AND length(name) <= 40),
    threshold_points     bigint NOT NULL UNIQUE CHECK (threshold_points >= 0),
    -- 1000 = x1.0; bonus points = base points x (multiplier - 1000) / 1000, rounded down.
    multiplier_permille  integer NOT NULL CHECK (multiplier_permille BETWEEN 1000 AND 10000),
    position             integer NOT NULL UNIQUE CHECK (position > 0)
);
INSERT INTO tiers (code, name, threshold_points, multiplier_permille, position) VALUES
    ('bronze', 'Bronze', 0, 1000, 1),
    ('silver', 'Silver', 1000, 1250, 2),
    ('gold', 'Gold', 5000, 1500, 3);
-- A member without a row is in the lowest tier.
CREATE TABLE member_tiers (
    member_id  bigint PRIMARY KEY REFERENCES members(id),
    tier_code  text NOT NULL REFERENCES tiers(code),
    since      timestamptz NOT NULL
);
CREATE TABLE tier_history (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id          bigint NOT NULL REFERENCES members(id),
    from_tier          text NOT NULL REFERENCES tiers(code),
    to_tier            text NOT NULL REFERENCES tiers(code),
    at                 timestamptz NOT NULL,
    reason             text NOT NULL CHECK (reason IN ('upgrade', 'review')),
    qualifying_points  bigint NOT NULL
);
CREATE INDEX tier_history_member ON tier_history (member_id, at DESC, id DESC);
-- One monthly review per Amsterdam month: the primary key makes it run once.
CREATE TABLE tier_reviews (
    month          date PRIMARY KEY,
    reviewed_at    timestamptz NOT NULL,
    members_moved  integer NOT NULL
);
-- What a tier did to an earn (bonus credited) or a refund (bonus reversed).
-- `points` stays the base points: settlement values and refunds rely on it.
ALTER TABLE transactions
    ADD COLUMN bonus_points bigint NOT NULL DEFAULT 0 CHECK (bonus_points >= 0),
    ADD COLUMN multiplier_permille integer CHECK (multiplier_permille >= 1000),
    ADD COLUMN tier_code text;
-- An earn's bonus lives in a lot of its own (price 0: the programme issued it,
-- nobody paid for it), linked by `bonus_for`; `transaction_id` stays the base lot's.
ALTER TABLE lots ADD COLUMN bonus_for uuid REFERENCES transactions(id);
CREATE INDEX lots_bonus_for ON lots (bonus_for) WHERE bonus_for IS NOT NULL;
-- The promo budget pays every tier bonus: shard it like a partner's points
-- accounts, so concurrent bonus earns do not queue on one row lock.
DROP INDEX accounts_programme_kind;
CREATE UNIQUE INDEX accounts_programme_kind ON accounts (kind, shard)
    WHERE member_id IS NULL AND partner_id IS NULL;
INSERT INTO accounts (kind, unit, shard)
SELECT 'programme_promo', 'PTS', s FROM generate_series(1, 15) s
"""

DOWNGRADE = """
DELETE FROM accounts WHERE kind = 'programme_promo' AND shard > 0;
DROP INDEX accounts_programme_kind;
CREATE UNIQUE INDEX accounts_programme_kind ON accounts (kind)
    WHERE member_id IS NULL AND partner_id IS NULL;
ALTER TABLE lots DROP COLUMN bonus_for;
ALTER TABLE transactions DROP COLUMN bonus_points, DROP COLUMN multiplier_permille,
    DROP COLUMN tier_code;
DROP TABLE tier_reviews, tier_history, member_tiers, tiers
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
