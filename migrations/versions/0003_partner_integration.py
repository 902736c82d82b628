"""Partner integration: bank details, webhooks (outbox, deliveries, attempts), portal staff.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
-- Where the programme pays a partner (SEPA credit transfer). NULL until the
-- partner gives one; an invalid IBAN is refused before it gets here.
ALTER TABLE partners
    ADD COLUMN iban text CHECK (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    ADD COLUMN bic text CHECK (bic ~ '^[A-Z0-9]{8}([A-Z0-9]{3})?$'),
    ADD COLUMN account_holder text CHECK (length(account_holder) BETWEEN 1 AND 70);

-- Endpoints a partner registered. Two secrets are valid while one is rotated:
-- deliveries are signed with both until `previous_secret_expires_at`.
CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    partner_id                  bigint NOT NULL REFERENCES partners(id),
    url                         text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    created_at                  timestamptz NOT NULL,
    disabled_at                 timestamptz
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id)
    WHERE disabled_at IS NULL;

-- The transactional outbox: written in the same transaction (usually the same
-- statement) as the ledger change it announces, so a rolled-back write
-- announces nothing. `fanned_out_at` is set once deliveries exist.
CREATE TABLE webhook_events (
    id             uuid PRIMARY KEY,
    partner_id     bigint NOT NULL REFERENCES partners(id),
    type           text NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    fanned_out_at  timestamptz
);
CREATE INDEX webhook_events_to_fan_out ON webhook_events (created_at) WHERE fanned_out_at IS NULL;

-- One delivery per event and endpoint, retried with exponential backoff.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES webhook_events(id),
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints(id),
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    delivered_at     timestamptz,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);

-- The delivery log: every attempt, what came back.
CREATE TABLE webhook_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     bigint NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at    timestamptz NOT NULL,
    status_code     integer,
    error           text,
    duration_ms     integer NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id DESC);

-- People at a partner who sign in to the portal (till, transactions,
-- statements, webhooks, credentials).
CREATE TABLE partner_staff (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id     bigint NOT NULL REFERENCES partners(id),
    email          text NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 254),
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    password_hash  text NOT NULL,
    role           text NOT NULL DEFAULT 'cashier' CHECK (role IN ('cashier', 'manager')),
    created_at     timestamptz NOT NULL,
    disabled_at    timestamptz
)
"""

DOWNGRADE = """
DROP TABLE partner_staff, webhook_attempts, webhook_deliveries, webhook_events, webhook_endpoints;
ALTER TABLE partners DROP COLUMN iban, DROP COLUMN bic, DROP COLUMN account_holder
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
