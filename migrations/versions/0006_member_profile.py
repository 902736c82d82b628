"""Member profile, surveys, account deletion (issue 4).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
-- How the member wants to be addressed and what they want to hear from us.
-- All of it is personal data: erased when the member deletes their account.
ALTER TABLE members
    ADD COLUMN salutation text CHECK (length(salutation) BETWEEN 1 AND 50),
    ADD COLUMN email_news boolean NOT NULL DEFAULT false,
    ADD COLUMN expiry_reminders boolean NOT NULL DEFAULT true,
    ADD COLUMN closed_at timestamptz;

-- The one-question survey after a purchase: one answer per earn
-- transaction (the unique key makes a repeat a conflict, never a second row).
-- Partner and time are kept for the per-partner NPS (issue 7); the comment is
-- personal data and is erased with the account, the score is not.
CREATE TABLE member_surveys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  uuid NOT NULL UNIQUE REFERENCES transactions(id),
    member_id       bigint NOT NULL REFERENCES members(id),
    partner_id      bigint NOT NULL REFERENCES partners(id),
    score           smallint NOT NULL CHECK (score BETWEEN 0 AND 10),
    comment         text CHECK (length(comment) BETWEEN 1 AND 1000),
    answered_at     timestamptz NOT NULL
);
CREATE INDEX member_surveys_member ON member_surveys (member_id);
CREATE INDEX member_surveys_partner ON member_surveys (partner_id, answered_at);

-- One row per deleted account: what was forfeited to breakage and through
-- which journal entry, and the debt abandoned with the account. Holds no
-- personal data (the member row itself is anonymised).
CREATE TABLE member_closures (
    member_id          bigint PRIMARY KEY REFERENCES members(id),
    closed_at          timestamptz NOT NULL,
    entry_id           bigint REFERENCES journal_entries(id),
    available_points   bigint NOT NULL CHECK (available_points >= 0),
    pending_points     bigint NOT NULL CHECK (pending_points >= 0),
    debt_points        bigint NOT NULL CHECK (debt_points >= 0)
);

-- 'forfeit' is reserved for a deleted account's points (see
-- api/coalition/member_profile.py: posted as 'expire' until settlement's
-- valuation counts 'forfeit' entries too).
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_kind_check CHECK (kind IN (
    'earn', 'release', 'authorize', 'capture', 'void', 'refund', 'expire', 'adjust',
    'settle', 'forfeit'))
"""

DOWNGRADE = """
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_kind_check;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_kind_check CHECK (kind IN (
    'earn', 'release', 'authorize', 'capture', 'void', 'refund', 'expire', 'adjust',
    'settle'));
DROP TABLE member_closures, member_surveys;
ALTER TABLE members DROP COLUMN salutation, DROP COLUMN email_news,
    DROP COLUMN expiry_reminders, DROP COLUMN closed_at
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
