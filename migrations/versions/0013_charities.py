"""Charities, donations, matching campaigns (issue 6).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ENTRY_KINDS = ("donation", "donation_match", "charity_payout")
ACCOUNT_KINDS = ("charity_points", "charity_money")
MONEY_KINDS = ("charity_money",)

UPGRADE = """
-- A charity members give points to. Its bank details are checked like a
-- partner's (api/coalition/banking.py): compact uppercase IBAN, BIC optional.
CREATE TABLE charities (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    logo_url        text CHECK (logo_url ~ '^https://' AND length(logo_url) <= 500),
    iban            text NOT NULL CHECK (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}$'),
    bic             text CHECK (bic ~ '^[A-Z0-9]{8}([A-Z0-9]{3})?$'),
    account_holder  text NOT NULL CHECK (length(account_holder) BETWEEN 1 AND 70),
    anbi            boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- A charity's points sit in one account of kind charity_points, found by
-- `charity_id` the way a partner's are found by `partner_id`; what the
-- programme owes it in euros (its monthly payouts) in one charity_money account.
ALTER TABLE accounts ADD COLUMN charity_id bigint REFERENCES charities(id);
ALTER TABLE accounts ADD CONSTRAINT accounts_charity_of_charity_kinds
    CHECK ((kind IN ('charity_points', 'charity_money')) = (charity_id IS NOT NULL));
CREATE UNIQUE INDEX accounts_charity ON accounts (charity_id, kind) WHERE charity_id IS NOT NULL;
DROP INDEX accounts_programme_kind;
CREATE UNIQUE INDEX accounts_programme_kind ON accounts (kind, shard)
    WHERE member_id IS NULL AND partner_id IS NULL AND charity_id IS NULL;

-- A partner matching donations 1:1 up to a budget, to one charity or to any.
-- `used_points` only grows, under a guarded UPDATE: the CHECK is the last word.
CREATE TABLE matching_campaigns (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id      bigint NOT NULL REFERENCES partners(id),
    charity_id      bigint REFERENCES charities(id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    ratio           smallint NOT NULL DEFAULT 1 CHECK (ratio = 1),
    budget_points   bigint NOT NULL CHECK (budget_points BETWEEN 1 AND 100000000),
    used_points     bigint NOT NULL DEFAULT 0 CHECK (used_points >= 0),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    created_at      timestamptz NOT NULL,
    CHECK (used_points <= budget_points),
    CHECK (ends_at > starts_at)
);
CREATE INDEX matching_campaigns_open ON matching_campaigns (ends_at) WHERE status = 'active';

-- A member's donation: the entry that moved the points and, when a campaign
-- matched it, the entry that moved the partner's points.
CREATE TABLE donations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id        bigint NOT NULL REFERENCES members(id),
    charity_id       bigint NOT NULL REFERENCES charities(id),
    points           bigint NOT NULL CHECK (points > 0),
    matched_points   bigint NOT NULL DEFAULT 0 CHECK (matched_points >= 0),
    campaign_id      bigint REFERENCES matching_campaigns(id),
    entry_id         bigint NOT NULL UNIQUE REFERENCES journal_entries(id),
    match_entry_id   bigint UNIQUE REFERENCES journal_entries(id),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    monthly_id       bigint,
    created_at       timestamptz NOT NULL,
    UNIQUE (member_id, idempotency_key),
    CHECK ((matched_points > 0) = (match_entry_id IS NOT NULL)),
    CHECK (matched_points = 0 OR campaign_id IS NOT NULL)
);
CREATE INDEX donations_member ON donations (member_id, created_at DESC);
CREATE INDEX donations_charity ON donations (charity_id);

-- A standing monthly donation. The job donates on `next_run_on`; its
-- idempotency key names the month, so a month is donated at most once. A
-- month the member lacks the points is skipped (no message): `last_outcome`
-- says what the last run did ('donated', 'skipped_insufficient_points').
CREATE TABLE monthly_donations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id    bigint NOT NULL REFERENCES members(id),
    charity_id   bigint NOT NULL REFERENCES charities(id),
    points       bigint NOT NULL CHECK (points > 0),
    active       boolean NOT NULL DEFAULT true,
    next_run_on  date NOT NULL,
    last_run_on  date,
    last_outcome text CHECK (last_outcome IN ('donated', 'skipped_insufficient_points')),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX monthly_donations_one_active ON monthly_donations (member_id, charity_id)
    WHERE active;
CREATE INDEX monthly_donations_due ON monthly_donations (next_run_on) WHERE active;
ALTER TABLE donations ADD CONSTRAINT donations_monthly
    FOREIGN KEY (monthly_id) REFERENCES monthly_donations(id);

-- Charity settlement: once a month each charity's points donated (and
-- matched) before the month's end are converted at the programme's rate, in
-- one `charity_payout` entry (points out of charity_points to
-- programme_breakage, euros from breakage revenue to charity_money), and paid
-- in the SEPA file of `business_date` (api/settlement/payouts.py).
CREATE TABLE charity_payouts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charity_id     bigint NOT NULL REFERENCES charities(id),
    month          date NOT NULL CHECK (extract(day FROM month) = 1),
    points         bigint NOT NULL CHECK (points > 0),
    price_micros   integer NOT NULL CHECK (price_micros >= 0),
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),
    business_date  date NOT NULL,
    entry_id       bigint NOT NULL UNIQUE REFERENCES journal_entries(id),
    created_at     timestamptz NOT NULL,
    UNIQUE (charity_id, month)
);
CREATE INDEX charity_payouts_day ON charity_payouts (business_date)
"""

DOWNGRADE = """
DROP TABLE charity_payouts;
DROP TABLE donations;
DROP TABLE monthly_donations;
DROP TABLE matching_campaigns;
DELETE FROM postings WHERE account_id IN (SELECT id FROM accounts WHERE charity_id IS NOT NULL);
DELETE FROM accounts WHERE charity_id IS NOT NULL;
DROP INDEX accounts_programme_kind;
CREATE UNIQUE INDEX accounts_programme_kind ON accounts (kind, shard)
    WHERE member_id IS NULL AND partner_id IS NULL;
ALTER TABLE accounts DROP COLUMN charity_id;
DROP TABLE charities
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


def _extend_kinds(table: str, constraint: str, added: tuple[str, ...], *, remove: bool) -> None:
    kinds = [kind for kind in _kinds(table, constraint) if kind not in added]
    listed = ", ".join(f"'{kind}'" for kind in (kinds if remove else [*kinds, *added]))
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (kind IN ({listed}))")


def _extend_money_kinds(*, remove: bool) -> None:
    """accounts_unit_of_kind: an account is in EUR exactly when its kind is listed."""
    constraint = "accounts_unit_of_kind"
    kinds = [kind for kind in _kinds("accounts", constraint) if kind not in MONEY_KINDS]
    listed = ", ".join(f"'{kind}'" for kind in (kinds if remove else [*kinds, *MONEY_KINDS]))
    op.execute(f"ALTER TABLE accounts DROP CONSTRAINT {constraint}")
    op.execute(
        f"ALTER TABLE accounts ADD CONSTRAINT {constraint}"
        f" CHECK ((unit = 'EUR') = (kind IN ({listed})))"
    )


def upgrade() -> None:
    _extend_kinds("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=False)
    _extend_kinds("accounts", "accounts_kind_check", ACCOUNT_KINDS, remove=False)
    _extend_money_kinds(remove=False)
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
    _extend_money_kinds(remove=True)
    _extend_kinds("accounts", "accounts_kind_check", ACCOUNT_KINDS, remove=True)
    _extend_kinds("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=True)
