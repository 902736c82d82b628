"""Lotteries: tickets, provably fair draws, prizes, free entries (issue 5).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The kinds this migration adds to the accounts' and journal's kind CHECKs.
# Other migrations of issue 5 extend the same CHECKs, so the lists are read
# from the database and extended, never restated (see `_extend_kinds`).
ACCOUNT_KINDS = ("programme_lottery_pool",)
ENTRY_KINDS = ("lottery_ticket", "lottery_prize", "lottery_refund")

UPGRADE = """
-- A lottery. The seed's SHA-256 is committed when the lottery is created and
-- shown from the moment sales open; the seed is shown only once drawn (the
-- CHECK ties the two together). Times are UTC instants.
CREATE TABLE lotteries (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    rules                   text NOT NULL CHECK (length(rules) BETWEEN 1 AND 10000),
    ticket_price_points     bigint NOT NULL CHECK (ticket_price_points > 0),
    tickets_per_member_max  integer NOT NULL CHECK (tickets_per_member_max BETWEEN 1 AND 1000),
    sales_open_at           timestamptz NOT NULL,
    sales_close_at          timestamptz NOT NULL,
    draw_at                 timestamptz NOT NULL,
    status                  text NOT NULL DEFAULT 'scheduled' CHECK (status IN (
                                'scheduled', 'selling', 'closed', 'drawn', 'cancelled')),
    seed_sha256             bytea NOT NULL CHECK (length(seed_sha256) = 32),
    seed                    bytea NOT NULL CHECK (sha256(seed) = seed_sha256),
    tickets_sold            integer NOT NULL DEFAULT 0 CHECK (tickets_sold >= 0),
    created_at              timestamptz NOT NULL,
    cancelled_at            timestamptz,
    -- The admin's Idempotency-Key: creating twice with one key makes one lottery.
    create_key              text UNIQUE CHECK (length(create_key) BETWEEN 1 AND 255),
    CHECK (sales_close_at > sales_open_at),
    CHECK (draw_at >= sales_close_at)
);
CREATE INDEX lotteries_due ON lotteries (draw_at) WHERE status NOT IN ('drawn', 'cancelled');

-- Prizes by rank (1 is drawn first): points from the lottery pool, or a
-- partner voucher described in text.
CREATE TABLE lottery_prizes (
    lottery_id    bigint NOT NULL REFERENCES lotteries(id),
    rank          integer NOT NULL CHECK (rank BETWEEN 1 AND 100),
    points        bigint CHECK (points > 0),
    voucher_text  text CHECK (length(voucher_text) BETWEEN 1 AND 500),
    PRIMARY KEY (lottery_id, rank),
    CHECK ((points IS NULL) <> (voucher_text IS NULL))
);

-- Tickets, numbered 1, 2, ... in order of sale per lottery. A paid ticket
-- names the entry that paid for it (and, after a cancellation, the entry that
-- refunded it); a free ticket has neither. The member's purchase key makes a
-- repeated purchase return the first ticket.
CREATE TABLE lottery_tickets (
    lottery_id       bigint NOT NULL REFERENCES lotteries(id),
    number           integer NOT NULL CHECK (number > 0),
    member_id        bigint NOT NULL REFERENCES members(id),
    paid             boolean NOT NULL,
    price_points     bigint NOT NULL CHECK (price_points >= 0),
    entry_id         bigint REFERENCES journal_entries(id),
    refund_entry_id  bigint REFERENCES journal_entries(id),
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    bought_at        timestamptz NOT NULL,
    PRIMARY KEY (lottery_id, number),
    CHECK (paid = (entry_id IS NOT NULL)),
    CHECK (paid = (price_points > 0)),
    CHECK (paid OR refund_entry_id IS NULL)
);
CREATE INDEX lottery_tickets_member ON lottery_tickets (member_id, lottery_id);
CREATE UNIQUE INDEX lottery_tickets_one_free ON lottery_tickets (lottery_id, member_id)
    WHERE NOT paid;
CREATE UNIQUE INDEX lottery_tickets_key ON lottery_tickets (member_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One draw per lottery: the primary key makes "runs exactly once" a
-- constraint. `document` is the published draw JSON, byte for byte.
CREATE TABLE lottery_draws (
    lottery_id          bigint PRIMARY KEY REFERENCES lotteries(id),
    drawn_at            timestamptz NOT NULL,
    tickets             integer NOT NULL CHECK (tickets >= 0),
    ticket_list_sha256  bytea NOT NULL CHECK (length(ticket_list_sha256) = 32),
    entry_id            bigint REFERENCES journal_entries(id),
    document            bytea NOT NULL
);
CREATE TABLE lottery_winners (
    lottery_id     bigint NOT NULL REFERENCES lottery_draws(lottery_id),
    rank           integer NOT NULL,
    ticket_number  integer NOT NULL,
    member_id      bigint NOT NULL REFERENCES members(id),
    PRIMARY KEY (lottery_id, rank),
    UNIQUE (lottery_id, ticket_number),
    FOREIGN KEY (lottery_id, rank) REFERENCES lottery_prizes(lottery_id, rank),
    FOREIGN KEY (lottery_id, ticket_number) REFERENCES lottery_tickets(lottery_id, number)
);
CREATE INDEX lottery_winners_member ON lottery_winners (member_id);

-- Where ticket points go and prizes come from.
INSERT INTO accounts (kind, unit) VALUES ('programme_lottery_pool', 'PTS')
"""

DOWNGRADE = """
DELETE FROM accounts WHERE kind = 'programme_lottery_pool';
DROP TABLE lottery_winners, lottery_draws, lottery_tickets, lottery_prizes, lotteries
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


def _set_kinds(table: str, constraint: str, kinds: list[str]) -> None:
    listed = ", ".join(f"'{kind}'" for kind in kinds)
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (kind IN ({listed}))")


def _extend_kinds(table: str, constraint: str, added: tuple[str, ...], *, remove: bool) -> None:
    """Add (or remove) kinds in a kind CHECK, keeping whatever else it lists."""
    kinds = [kind for kind in _kinds(table, constraint) if kind not in added]
    _set_kinds(table, constraint, kinds if remove else [*kinds, *added])


def upgrade() -> None:
    _extend_kinds("accounts", "accounts_kind_check", ACCOUNT_KINDS, remove=False)
    _extend_kinds("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=False)
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
    _extend_kinds("journal_entries", "journal_entries_kind_check", ENTRY_KINDS, remove=True)
    _extend_kinds("accounts", "accounts_kind_check", ACCOUNT_KINDS, remove=True)
