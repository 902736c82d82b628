"""Admin accounts: passwords, TOTP, recovery codes, roles, the audit log (issues 5 and 7).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE admin_accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND email <> ''),
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('owner', 'finance', 'support', 'marketing')),
    -- The TOTP shared secret (base32): verifying a code needs it in the clear.
    totp_secret text NOT NULL,
    -- The last TOTP time step accepted: a code of that step or earlier is refused,
    -- so a code seen over a shoulder cannot be replayed within its window.
    totp_last_step bigint,
    created_at timestamptz NOT NULL,
    disabled_at timestamptz
);
CREATE TABLE admin_recovery_codes (
    admin_id bigint NOT NULL REFERENCES admin_accounts (id),
    -- SHA-256 of the normalised code; codes carry 80 random bits, so a fast
    -- hash is enough and lets sign-in find the code in one indexed look-up.
    code_sha256 bytea NOT NULL CHECK (length(code_sha256) = 32),
    used_at timestamptz,
    PRIMARY KEY (admin_id, code_sha256)
);
CREATE TABLE admin_audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    admin_id bigint NOT NULL REFERENCES admin_accounts (id),
    -- Copied, so a row reads the same after the admin changes role or address.
    admin_email text NOT NULL,
    admin_role text NOT NULL,
    action text NOT NULL CHECK (action <> '' AND length(action) <= 100),
    subject text NOT NULL CHECK (length(subject) <= 200),
    before jsonb,
    after jsonb
);
CREATE INDEX admin_audit_log_at ON admin_audit_log (at DESC, id DESC);
CREATE INDEX admin_audit_log_admin ON admin_audit_log (admin_id, at DESC, id DESC);
CREATE INDEX admin_audit_log_action ON admin_audit_log (action, at DESC, id DESC);
CREATE FUNCTION admin_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'admin_audit_log is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation'; END $$;
CREATE TRIGGER admin_audit_log_no_change BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION admin_audit_log_append_only();
CREATE TRIGGER admin_audit_log_no_truncate BEFORE TRUNCATE ON admin_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_log_append_only()
"""

DOWNGRADE = """
DROP TABLE admin_audit_log;
DROP FUNCTION admin_audit_log_append_only();
DROP TABLE admin_recovery_codes;
DROP TABLE admin_accounts
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
