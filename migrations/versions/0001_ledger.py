"""The points ledger, partners, members, partner transactions, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written as SQL: the ledger leans on CHECK constraints, partial indexes and
# identity columns, and the DDL is the clearest statement of the invariants.
UPGRADE = """
CREATE TABLE partners (
    id                                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id                         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    code                              text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name                              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind                              text NOT NULL CHECK (length(kind) BETWEEN 1 AND 50),
    status                            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    currency                          char(3) NOT NULL DEFAULT 'EUR',
    earn_rate_millipoints_per_euro    integer NOT NULL CHECK (earn_rate_millipoints_per_euro >= 0),
    issuance_price_micros             integer NOT NULL CHECK (issuance_price_micros >= 0),
    redemption_price_micros           integer NOT NULL CHECK (redemption_price_micros >= 0),
    return_window_days                integer NOT NULL CHECK (return_window_days BETWEEN 0 AND 365),
    created_at                        timestamptz NOT NULL
);

CREATE TABLE partner_credentials (
    client_id      text PRIMARY KEY,
    partner_id     bigint NOT NULL REFERENCES partners(id),
    secret_sha256  bytea NOT NULL,
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz
);
CREATE INDEX partner_credentials_partner ON partner_credentials (partner_id);

CREATE TABLE members (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    card_number   text NOT NULL UNIQUE CHECK (card_number ~ '^[0-9]{16}$'),
    email         text UNIQUE,
    display_name  text,
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'closed')),
    created_at    timestamptz NOT NULL
);

-- One row per account; `balance` is the sum of the account's postings, kept
-- in the same transaction as the postings. The CHECKs are the last line of
-- defence behind the guarded updates in api/ledger/entries.py.
-- A partner's points accounts are split into `shard`s: each shard is a full
-- account of its own, and the partner's figure is the sum over its shards.
-- Every earn at one partner would otherwise queue on one row lock.
CREATE TABLE accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN (
                    'member_available', 'member_pending', 'member_held', 'member_debt',
                    'partner_points_issued', 'partner_points_redeemed',
                    'programme_breakage', 'programme_promo', 'programme_adjustments')),
    unit        text NOT NULL CHECK (unit IN ('PTS', 'EUR')),
    member_id   bigint REFERENCES members(id),
    partner_id  bigint REFERENCES partners(id),
    shard       smallint NOT NULL DEFAULT 0 CHECK (shard >= 0),
    balance     bigint NOT NULL DEFAULT 0,
    CHECK (kind NOT IN ('member_available', 'member_pending', 'member_held') OR balance >= 0),
    CHECK (kind <> 'member_debt' OR balance <= 0),
    CHECK ((kind LIKE 'member_%') = (member_id IS NOT NULL)),
    CHECK ((kind LIKE 'partner_%') = (partner_id IS NOT NULL))
);
CREATE UNIQUE INDEX accounts_member_kind ON accounts (member_id, kind) WHERE member_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_partner_kind ON accounts (partner_id, kind, shard)
    WHERE partner_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_programme_kind ON accounts (kind)
    WHERE member_id IS NULL AND partner_id IS NULL;

-- What a partner or the programme did, as the partner sees it.
CREATE TABLE transactions (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    partner_id             bigint NOT NULL REFERENCES partners(id),
    member_id              bigint NOT NULL REFERENCES members(id),
    kind                   text NOT NULL CHECK (kind IN ('earn', 'burn', 'refund')),
    status                 text NOT NULL CHECK (status IN (
                               'pending', 'available', 'authorized', 'captured',
                               'voided', 'expired', 'completed')),
    amount_cents           bigint CHECK (amount_cents >= 0),
    currency               char(3),
    points                 bigint NOT NULL CHECK (points >= 0),
    points_captured        bigint NOT NULL DEFAULT 0 CHECK (points_captured >= 0),
    points_refunded        bigint NOT NULL DEFAULT 0 CHECK (points_refunded >= 0),
    amount_refunded_cents  bigint NOT NULL DEFAULT 0 CHECK (amount_refunded_cents >= 0),
    debt_points            bigint NOT NULL DEFAULT 0 CHECK (debt_points >= 0),
    debt_repaid_points     bigint NOT NULL DEFAULT 0 CHECK (debt_repaid_points >= 0),
    price_micros           integer NOT NULL,
    receipt_ref            text,
    store_id               text,
    original_id            uuid REFERENCES transactions(id),
    occurred_at            timestamptz NOT NULL,
    created_at             timestamptz NOT NULL,
    available_at           timestamptz,
    hold_expires_at        timestamptz,
    finished_at            timestamptz,
    CHECK (points_refunded <= points),
    CHECK (amount_refunded_cents <= coalesce(amount_cents, 0)),
    CHECK (points_captured <= points)
);
CREATE INDEX transactions_partner_page ON transactions (partner_id, created_at DESC, id DESC);
CREATE INDEX transactions_member_page ON transactions (member_id, created_at DESC, id DESC);
CREATE INDEX transactions_open_holds ON transactions (hold_expires_at) WHERE status = 'authorized';
CREATE INDEX transactions_original ON transactions (original_id) WHERE original_id IS NOT NULL;

-- Journal: append only. Each entry's postings sum to zero per unit.
CREATE TABLE journal_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN (
                        'earn', 'release', 'authorize', 'capture', 'void', 'refund',
                        'expire', 'adjust')),
    transaction_id  uuid REFERENCES transactions(id),
    partner_id      bigint REFERENCES partners(id),
    member_id       bigint REFERENCES members(id),
    -- The per-point price that applied: issuance price for earns and their
    -- refunds, redemption price for captures; NULL where no partner is involved.
    price_micros    integer,
    booked_at       timestamptz NOT NULL
);
CREATE INDEX journal_entries_transaction ON journal_entries (transaction_id)
    WHERE transaction_id IS NOT NULL;
CREATE INDEX journal_entries_booked ON journal_entries (booked_at);

CREATE TABLE postings (
    entry_id    bigint NOT NULL REFERENCES journal_entries(id),
    account_id  bigint NOT NULL REFERENCES accounts(id),
    unit        text NOT NULL CHECK (unit IN ('PTS', 'EUR')),
    amount      bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (entry_id, account_id)
);
CREATE INDEX postings_account ON postings (account_id);

-- Points lots: the sub-ledger behind member pending and available balances.
-- Sum of points_remaining over a member's pending lots = pending balance; over
-- available lots = available balance. Burns consume available lots FIFO by
-- expiry; `hold_lots` remembers which, so a void puts points back in place.
CREATE TABLE lots (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id         bigint NOT NULL REFERENCES members(id),
    transaction_id    uuid REFERENCES transactions(id),
    state             text NOT NULL CHECK (state IN ('pending', 'available')),
    points_original   bigint NOT NULL CHECK (points_original >= 0),
    points_remaining  bigint NOT NULL CHECK (points_remaining >= 0),
    available_at      timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    CHECK (points_remaining <= points_original),
    CHECK (expires_at > available_at)
);
CREATE INDEX lots_member_fifo ON lots (member_id, expires_at, id)
    WHERE state = 'available' AND points_remaining > 0;
CREATE INDEX lots_to_release ON lots (available_at) WHERE state = 'pending';
CREATE INDEX lots_to_expire ON lots (expires_at)
    WHERE state = 'available' AND points_remaining > 0;
CREATE INDEX lots_transaction ON lots (transaction_id) WHERE transaction_id IS NOT NULL;

CREATE TABLE hold_lots (
    transaction_id  uuid NOT NULL REFERENCES transactions(id),
    lot_id          bigint NOT NULL REFERENCES lots(id),
    points          bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (transaction_id, lot_id)
);

-- Stored in the same transaction as the write it protects.
CREATE TABLE idempotency_keys (
    partner_id       bigint NOT NULL REFERENCES partners(id),
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_sha256   bytea NOT NULL,
    response_status  smallint,
    response_body    bytea,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (partner_id, key)
);

INSERT INTO accounts (kind, unit) VALUES
    ('programme_breakage', 'PTS'),
    ('programme_promo', 'PTS'),
    ('programme_adjustments', 'PTS');
"""

DOWNGRADE = """
DROP TABLE idempotency_keys, hold_lots, lots, postings, journal_entries, transactions,
    accounts, members, partner_credentials, partners;
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
