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

-- The dashboard reads purchases and redemptions by booking month across all
-- members (api/programme_health/figures.py): without these, every figure
-- scans the whole transactions table. Partial and covering, so a month's
-- figures read only the index.
CREATE INDEX transactions_earn_booked ON transactions (created_at)
    INCLUDE (member_id, partner_id, points, bonus_points, amount_cents, amount_refunded_cents)
    WHERE kind = 'earn';
CREATE INDEX transactions_earn_member ON transactions (member_id, created_at)
    WHERE kind = 'earn';
CREATE INDEX transactions_captured ON transactions (finished_at)
    INCLUDE (member_id, partner_id, points_captured)
    WHERE kind = 'burn' AND status = 'captured'
"""

DOWNGRADE = """
DROP INDEX transactions_captured;
DROP INDEX transactions_earn_member;
DROP INDEX transactions_earn_booked;
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
