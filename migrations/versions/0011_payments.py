"""Payments: provider payments, sandbox checkout, Mollie (issue 6).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ENTRY_KINDS = ("payment",)
# EUR accounts of the programme: what the payment provider holds for it, and
# the revenue of VIP subscriptions.
MONEY_KINDS = ("programme_psp_clearing", "programme_revenue_vip")

UPGRADE = """
INSERT INTO accounts (kind, unit) VALUES
    ('programme_psp_clearing', 'EUR'),
    ('programme_revenue_vip', 'EUR');

-- A payment a member makes through a provider, for a purpose (what it pays
-- for: 'vip_subscription') and a reference in that purpose (a VIP period):
-- one payment per (purpose, reference), so starting it twice is harmless.
-- Open until the provider says otherwise; a final status never changes.
CREATE TABLE payments (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purpose             text NOT NULL CHECK (length(purpose) BETWEEN 1 AND 64),
    reference           text NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),
    member_id           bigint NOT NULL REFERENCES members(id),
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    currency            text NOT NULL DEFAULT 'EUR' CHECK (currency = 'EUR'),
    description         text NOT NULL CHECK (length(description) BETWEEN 1 AND 255),
    provider            text NOT NULL CHECK (provider IN ('sandbox', 'mollie')),
    provider_payment_id text UNIQUE,
    status              text NOT NULL DEFAULT 'open'
                            CHECK (status IN ('open', 'paid', 'failed', 'canceled', 'expired')),
    sequence            text NOT NULL DEFAULT 'oneoff'
                            CHECK (sequence IN ('oneoff', 'first', 'recurring')),
    checkout_url        text,
    redirect_url        text NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    paid_at             timestamptz,
    -- The EUR entry booked when it was paid (clearing against revenue).
    entry_id            bigint REFERENCES journal_entries(id),
    UNIQUE (purpose, reference),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL)),
    CHECK ((status = 'paid') = (entry_id IS NOT NULL))
);
CREATE INDEX payments_member ON payments (member_id, created_at);

-- Every notification received (webhook, the sandbox's checkout, a poll) and
-- every status change: from_status = to_status for one that changed nothing.
CREATE TABLE payment_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  bigint NOT NULL REFERENCES payments(id),
    from_status text NOT NULL,
    to_status   text NOT NULL,
    source      text NOT NULL CHECK (source IN ('webhook', 'checkout', 'poll')),
    at          timestamptz NOT NULL
);
CREATE INDEX payment_events_payment ON payment_events (payment_id, id);

-- The built-in sandbox provider's own state (api/payments/sandbox.py): its
-- payments, with the token its checkout page's forms carry, and per member
-- whether the next off-session (recurring) payment should fail.
CREATE TABLE sandbox_payments (
    id              text PRIMARY KEY,
    member_id       bigint NOT NULL REFERENCES members(id),
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    description     text NOT NULL,
    sequence        text NOT NULL CHECK (sequence IN ('oneoff', 'first', 'recurring')),
    status          text NOT NULL
                        CHECK (status IN ('open', 'paid', 'failed', 'canceled', 'expired')),
    form_token      text NOT NULL,
    redirect_url    text NOT NULL,
    created_at      timestamptz NOT NULL
);
-- A member's customer at a provider that needs one for recurring payments
-- (Mollie: the first payment creates a mandate on the customer; recurring
-- payments name the customer and Mollie charges its valid mandate).
CREATE TABLE payment_customers (
    member_id               bigint NOT NULL REFERENCES members(id),
    provider                text NOT NULL CHECK (provider IN ('mollie')),
    provider_customer_id    text NOT NULL UNIQUE,
    created_at              timestamptz NOT NULL,
    PRIMARY KEY (member_id, provider)
);
CREATE TABLE sandbox_mandates (
    member_id           bigint PRIMARY KEY REFERENCES members(id),
    fail_next_recurring boolean NOT NULL DEFAULT false
)
"""

DOWNGRADE = """
DROP TABLE sandbox_mandates;
DROP TABLE payment_customers;
DROP TABLE sandbox_payments;
DROP TABLE payment_events;
DROP TABLE payments;
DELETE FROM accounts WHERE kind IN ('programme_psp_clearing', 'programme_revenue_vip')
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds one command.
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def _kinds(table: str, constraint: str) -> list[str]:
    definition = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
            f" WHERE c.conname = '{constraint}' AND c.conrelid = '{table}'::regclass"
        )
        .scalar_one()
    )
    return re.findall(r"'([a-z_]+)'::text", definition)


def _listed(kinds: list[str]) -> str:
    return ", ".join(f"'{kind}'" for kind in kinds)


def _extend(table: str, constraint: str, added: tuple[str, ...], *, remove: bool) -> None:
    """Add (or remove) kinds in a `kind IN (...)` CHECK, keeping the rest as it is."""
    kinds = [kind for kind in _kinds(table, constraint) if kind not in added]
    listed = _listed(kinds if remove else [*kinds, *added])
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (kind IN ({listed}))")


def _extend_money_kinds(*, remove: bool) -> None:
    """accounts_unit_of_kind: an account is in EUR exactly when its kind is one
    of the money kinds listed there."""
    constraint = "accounts_unit_of_kind"
    kinds = [kind for kind in _kinds("accounts", constraint) if kind not in MONEY_KINDS]
    listed = _listed(kinds if remove else [*kinds, *MONEY_KINDS])
    op.execute(f"ALTER TABLE accounts DROP CONSTRAINT {constraint}")
    op.execute(
        f"ALTER TABLE accounts ADD CONSTRAINT {constraint}"
        f" CHECK ((unit = 'EUR') = (kind IN ({listed})))"
    )


def upgrade() -> None:
    _extend("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=False)
    _extend("accounts", "accounts_kind_check", MONEY_KINDS, remove=False)
    _extend_money_kinds(remove=False)
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
    _extend_money_kinds(remove=True)
    _extend("accounts", "accounts_kind_check", MONEY_KINDS, remove=True)
    _extend("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=True)
