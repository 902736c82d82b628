"""Settlement: periods, statements and their lines, the money side of the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE partners
    ADD COLUMN settlement_period text NOT NULL DEFAULT 'daily'
        CHECK (settlement_period IN ('daily', 'weekly', 'monthly'));

-- The money side: EUR accounts next to the points accounts.
--   partner_money               per partner; positive = the programme owes the partner
--   programme_float             money held against the points liability
--   programme_revenue_spread    issuance price less redemption price of burned points
--   programme_revenue_breakage  issuance price of expired points
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'member_available', 'member_pending', 'member_held', 'member_debt',
    'partner_points_issued', 'partner_points_redeemed', 'partner_money',
    'programme_breakage', 'programme_promo', 'programme_adjustments',
    'programme_float', 'programme_revenue_spread', 'programme_revenue_breakage'));
ALTER TABLE accounts ADD CONSTRAINT accounts_unit_of_kind CHECK (
    (unit = 'EUR') = (kind IN ('partner_money', 'programme_float',
                               'programme_revenue_spread', 'programme_revenue_breakage')));
INSERT INTO accounts (kind, unit) VALUES
    ('programme_float', 'EUR'),
    ('programme_revenue_spread', 'EUR'),
    ('programme_revenue_breakage', 'EUR');
INSERT INTO accounts (kind, unit, partner_id) SELECT 'partner_money', 'EUR', id FROM partners;

ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_kind_check CHECK (kind IN (
    'earn', 'release', 'authorize', 'capture', 'void', 'refund', 'expire', 'adjust',
    'settle'));

-- The issuance price of a lot's points: what they are worth to the programme
-- while outstanding, and what they earn as breakage when they expire.
ALTER TABLE lots ADD COLUMN price_micros integer NOT NULL DEFAULT 0 CHECK (price_micros >= 0);
UPDATE lots l SET price_micros = t.price_micros FROM transactions t WHERE t.id = l.transaction_id;

-- Which other lots a refund took points from (beyond the purchase's own lot),
-- and which lots an expiry emptied: with `hold_lots`, every point that leaves
-- a lot is traced to the lot's price.
CREATE TABLE refund_lots (
    transaction_id  uuid NOT NULL REFERENCES transactions(id),
    lot_id          bigint NOT NULL REFERENCES lots(id),
    points          bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (transaction_id, lot_id)
);
CREATE TABLE lot_expiries (
    entry_id  bigint NOT NULL REFERENCES journal_entries(id),
    lot_id    bigint NOT NULL REFERENCES lots(id),
    points    bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (entry_id, lot_id)
);

-- One run per business day closes that day's periods. The row is the run's
-- lock: a second run for the same day waits on it, then finds it done.
CREATE TABLE settlement_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_date  date NOT NULL UNIQUE,
    period_end     timestamptz NOT NULL UNIQUE,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    statements     integer NOT NULL DEFAULT 0,
    entries        bigint NOT NULL DEFAULT 0,
    -- The programme's points liability after this run, exactly (micro-euros),
    -- carried from run to run: the float is kept equal to it, in cents.
    liability_points  bigint NOT NULL DEFAULT 0,
    liability_micros  numeric(38, 0) NOT NULL DEFAULT 0
);

-- A partner's statement for a period, or the programme's own (partner_id
-- NULL: releases, expiries, revenue recognition). Closed statements never change.
CREATE TABLE statements (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    run_id        bigint NOT NULL REFERENCES settlement_runs(id),
    partner_id    bigint REFERENCES partners(id),
    period        text NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly')),
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    currency      char(3) NOT NULL DEFAULT 'EUR',
    entries       bigint NOT NULL DEFAULT 0,
    net_cents     bigint NOT NULL DEFAULT 0,
    closed_at     timestamptz NOT NULL,
    -- The earliest booking time the run looked at for this statement: the
    -- previous close less the window for late commits.
    since         timestamptz NOT NULL,
    CHECK (period_end > period_start)
);
CREATE UNIQUE INDEX statements_partner_period ON statements (partner_id, period_end)
    WHERE partner_id IS NOT NULL;
CREATE UNIQUE INDEX statements_programme_run ON statements (run_id) WHERE partner_id IS NULL;
CREATE INDEX statements_partner_page ON statements (partner_id, period_end DESC, id DESC);

-- Lines per category. `amount_micros` is the exact sum of points x stored
-- price; `amount_cents` is it rounded half-even, once. Signs are the
-- partner's view: positive = the programme pays the partner.
CREATE TABLE statement_lines (
    statement_id   bigint NOT NULL REFERENCES statements(id),
    category       text NOT NULL CHECK (category IN (
                       'points_issued', 'points_redeemed', 'refunds', 'sponsored_rewards',
                       'breakage', 'spread', 'liability')),
    entries        bigint NOT NULL,
    points         bigint NOT NULL,
    amount_micros  numeric(38, 0) NOT NULL,
    amount_cents   bigint NOT NULL,
    PRIMARY KEY (statement_id, category)
);

-- Every journal entry lands in exactly one statement: the primary key makes
-- it a constraint, and the journal itself stays append-only. No foreign keys:
-- only a run writes here, from a join of the journal with its own
-- statements, and per-row key checks would double the time of a run over a
-- million entries; `kring ledger check` proves every row points at an entry
-- and a statement.
CREATE TABLE settled_entries (
    entry_id      bigint PRIMARY KEY,
    statement_id  bigint NOT NULL
);
CREATE INDEX settled_entries_statement ON settled_entries (statement_id, entry_id)
"""

DOWNGRADE = """
DROP TABLE settled_entries, statement_lines, statements, settlement_runs, lot_expiries,
    refund_lots;
ALTER TABLE lots DROP COLUMN price_micros;
DELETE FROM accounts WHERE unit = 'EUR';
ALTER TABLE accounts DROP CONSTRAINT accounts_unit_of_kind;
ALTER TABLE partners DROP COLUMN settlement_period
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
