"""The monthly pulse survey and indexes for the programme health figures (issue 7).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

UPGRADE = """
-- The loyalty tracker: a pulse survey the wallet offers a member at most once
-- per Amsterdam month. The row is written when it is offered (the primary key
-- makes "once a month" a constraint); it is then answered or dismissed, once.
-- keep/more: "will you keep using / use more of Kring's partners", 1-5;
-- recommend: "would you recommend Kring", 0-10 (NPS).
CREATE TABLE pulse_surveys (
    member_id        bigint NOT NULL REFERENCES members(id),
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    offered_at       timestamptz NOT NULL,
    answered_at      timestamptz,
    dismissed_at     timestamptz,
    keep_score       smallint CHECK (keep_score BETWEEN 1 AND 5),
    more_score       smallint CHECK (more_score BETWEEN 1 AND 5),
    recommend_score  smallint CHECK (recommend_score BETWEEN 0 AND 10),
    PRIMARY KEY (member_id, month),
    CHECK (answered_at IS NULL OR dismissed_at IS NULL),
    CHECK ((answered_at IS NOT NULL) = (keep_score IS NOT NULL)
           AND (answered_at IS NOT NULL) = (more_score IS NOT NULL)
           AND (answered_at IS NOT NULL) = (recommend_score IS NOT NULL))
);
CREATE INDEX pulse_surveys_month ON pulse_surveys (month);

-- The dashboard reads purchases and redemptions by booking time across all
-- members (api/programme_health/figures.py): without an index, every live
-- figure scans the whole transactions table. BRIN, because rows are
-- appended in booking order: a few pages of summaries find a window's
-- blocks, and an earn pays almost nothing to keep it (two b-tree indexes
-- here cost the earn path a third of its throughput: 919 against 614 earns/s
-- in one earn_bench session).
CREATE INDEX transactions_created_brin ON transactions USING brin (created_at);
CREATE INDEX transactions_captured ON transactions (finished_at)
    INCLUDE (member_id, partner_id, points_captured)
    WHERE kind = 'burn' AND status = 'captured';

-- Rollups the dashboard reads instead of a year of transactions (written
-- whole by api/programme_health/rollup.py, at most every few minutes, in one
-- transaction, so a reader sees the previous or the next one, never half).
-- Months are Amsterdam months; a purchase counts in the month it was booked,
-- a redemption in the month it was captured.
CREATE TABLE health_member_months (
    month            date NOT NULL,
    member_id        bigint NOT NULL,
    purchases        integer NOT NULL,
    spend_cents      bigint NOT NULL,
    points_earned    bigint NOT NULL,  -- base + tier and VIP bonus
    points_redeemed  bigint NOT NULL,
    redemptions      integer NOT NULL,
    PRIMARY KEY (month, member_id)
);
CREATE TABLE health_partner_months (
    month            date NOT NULL,
    partner_id       bigint NOT NULL,
    purchases        integer NOT NULL,
    spend_cents      bigint NOT NULL,
    base_points      bigint NOT NULL,
    points_redeemed  bigint NOT NULL,
    PRIMARY KEY (month, partner_id)
);
-- Which months a member bought at a partner: how many partners a member
-- uses in any window, from one row per pair.
CREATE TABLE health_member_partners (
    member_id   bigint NOT NULL,
    partner_id  bigint NOT NULL,
    months      date[] NOT NULL,
    PRIMARY KEY (member_id, partner_id)
);
-- Points redeemed at one partner that were earned at another (0: programme rewards).
CREATE TABLE health_partner_flow (
    month              date NOT NULL,
    earned_partner_id  bigint NOT NULL,
    burned_partner_id  bigint NOT NULL,
    points             bigint NOT NULL,
    PRIMARY KEY (month, earned_partner_id, burned_partner_id)
);
CREATE TABLE health_refreshes (
    id                bigint PRIMARY KEY CHECK (id = 1),
    refreshed_at      timestamptz NOT NULL,
    took_ms           integer NOT NULL,
    liability_points  bigint NOT NULL,
    liability_micros  numeric(38, 0) NOT NULL
)
"""

DOWNGRADE = """
DROP TABLE health_refreshes, health_partner_flow, health_member_partners, health_partner_months,
    health_member_months;
DROP INDEX transactions_captured;
DROP INDEX transactions_created_brin;
DROP TABLE pulse_surveys
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
