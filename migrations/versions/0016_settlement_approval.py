"""Settlement approval in the back-office (issue 7).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UPGRADE = """
-- Who started a run (NULL: the periodic job) and who approved its payouts.
-- The SEPA file of a run is released only once it is approved, and never by
-- the admin who started it (maker-checker): the CHECK is the last word on
-- that, behind the check in api/settlement/approval.py.
ALTER TABLE settlement_runs
    ADD COLUMN started_by_admin_id bigint REFERENCES admin_accounts (id),
    ADD COLUMN approved_by_admin_id bigint REFERENCES admin_accounts (id),
    ADD COLUMN approved_at timestamptz,
    ADD CONSTRAINT settlement_runs_approval_pair
        CHECK ((approved_by_admin_id IS NULL) = (approved_at IS NULL)),
    ADD CONSTRAINT settlement_runs_checker_not_maker
        CHECK (approved_by_admin_id <> started_by_admin_id);

-- A settlement started from the back-office: it settles every unsettled day
-- up to `business_date`, in order, and records its progress here so that
-- any API process can show it. One job per target day (a second start finds
-- the first), unless the first failed.
CREATE TABLE settlement_jobs (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_date          date NOT NULL,
    requested_by_admin_id  bigint NOT NULL REFERENCES admin_accounts (id),
    status                 text NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'done', 'failed')),
    days_total             integer NOT NULL CHECK (days_total >= 0),
    days_done              integer NOT NULL DEFAULT 0,
    current_day            date,
    error                  text CHECK (length(error) <= 500),
    created_at             timestamptz NOT NULL,
    heartbeat_at           timestamptz NOT NULL,
    finished_at            timestamptz,
    CHECK (days_done BETWEEN 0 AND days_total),
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE UNIQUE INDEX settlement_jobs_one_per_day ON settlement_jobs (business_date)
    WHERE status <> 'failed';
CREATE INDEX settlement_jobs_recent ON settlement_jobs (created_at DESC, id DESC)
"""

DOWNGRADE = """
DROP TABLE settlement_jobs;
ALTER TABLE settlement_runs
    DROP CONSTRAINT settlement_runs_checker_not_maker,
    DROP CONSTRAINT settlement_runs_approval_pair,
    DROP COLUMN approved_at,
    DROP COLUMN approved_by_admin_id,
    DROP COLUMN started_by_admin_id
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
