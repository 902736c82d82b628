"""Member sign-in: one-time codes, rate limits, sessions, mail outbox (issue 4).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
-- One live code per address: a new code replaces the last one. Only an
-- HMAC-SHA256 of the code (keyed with the server secret) is stored, since a
-- bare hash of 10^6 possible codes is read back in a second. A used code keeps
-- its row (used_at) so that sending it again says "already used".
-- No member row exists for an address until its code is verified.
CREATE TABLE sign_in_codes (
    email          text PRIMARY KEY CHECK (email = lower(email) AND length(email) <= 254),
    code_hmac      bytea NOT NULL,
    issued_at      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    attempts       integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    used_at        timestamptz,
    -- After too many wrong attempts: no code is sent or accepted until then.
    cooldown_until timestamptz
);

-- Fixed-window counters shared by every API process: one row per bucket
-- (e.g. 'code:address:ann@example.com', 'code:ip:203.0.113.9') and window,
-- bumped with one atomic upsert.
CREATE TABLE auth_rate_limits (
    bucket        text NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          integer NOT NULL CHECK (hits > 0),
    PRIMARY KEY (bucket, window_start)
);

-- A wallet session (cookie) or a member API token: the JWT names the row,
-- and the row must be live on every request, so signing out is immediate.
CREATE TABLE member_sessions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    member_id   bigint NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('wallet', 'api')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX member_sessions_member ON member_sessions (member_id);

-- Mail is written here in the transaction that makes it (a sign-in code with
-- its code row), then sent after commit; a row never sent stays visible.
-- Without SMTP (development) this table is the mailbox at /dev/mailbox.
CREATE TABLE mail_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body_text   text NOT NULL,
    created_at  timestamptz NOT NULL,
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX mail_outbox_unsent ON mail_outbox (id) WHERE sent_at IS NULL
"""

DOWNGRADE = """
DROP TABLE mail_outbox;
DROP TABLE member_sessions;
DROP TABLE auth_rate_limits;
DROP TABLE sign_in_codes
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
