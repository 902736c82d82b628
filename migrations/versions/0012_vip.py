"""VIP plans and subscriptions (issue 6).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE vip_plans (
    code                  text PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{1,40}$'),
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    period                text NOT NULL CHECK (period IN ('month', 'year')),
    price_cents           integer NOT NULL CHECK (price_cents BETWEEN 1 AND 100000),
    multiplier_permille   integer NOT NULL CHECK (multiplier_permille BETWEEN 1000 AND 10000),
    monthly_bonus_points  integer NOT NULL DEFAULT 0
                          CHECK (monthly_bonus_points BETWEEN 0 AND 100000),
    free_lottery_tickets  integer NOT NULL DEFAULT 0 CHECK (free_lottery_tickets BETWEEN 0 AND 10),
    active                boolean NOT NULL DEFAULT true,
    position              integer NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO vip_plans
    (code, name, period, price_cents, multiplier_permille, monthly_bonus_points,
     free_lottery_tickets, position)
VALUES ('vip_monthly', 'VIP Monthly', 'month', 499, 1500, 100, 1, 1),
       ('vip_yearly', 'VIP Yearly', 'year', 4900, 1500, 100, 1, 2);
-- pending: first payment open; active: a paid period runs (renewed ahead of
-- its end unless cancel_at_period_end); grace: a renewal failed, retried
-- daily, benefits continue until grace_until; final: cancelled (ended at the
-- period end), lapsed (grace ran out), abandoned (first payment failed).
CREATE TABLE vip_subscriptions (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id             bigint NOT NULL REFERENCES members(id),
    plan_code             text NOT NULL REFERENCES vip_plans(code),
    status                text NOT NULL CHECK (status IN
                              ('pending', 'active', 'grace', 'cancelled', 'lapsed', 'abandoned')),
    cancel_at_period_end  boolean NOT NULL DEFAULT false,
    current_period_end    timestamptz,
    grace_until           timestamptz,
    created_at            timestamptz NOT NULL,
    ended_at              timestamptz,
    CHECK ((status IN ('active', 'grace')) = (current_period_end IS NOT NULL AND ended_at IS NULL)
           OR status IN ('cancelled', 'lapsed')),
    CHECK ((status = 'grace') = (grace_until IS NOT NULL) OR status = 'lapsed')
);
-- At most one subscription per member that is not over.
CREATE UNIQUE INDEX vip_subscriptions_one_open ON vip_subscriptions (member_id)
    WHERE status IN ('pending', 'active', 'grace');
CREATE INDEX vip_subscriptions_member ON vip_subscriptions (member_id, id DESC);
CREATE INDEX vip_subscriptions_due ON vip_subscriptions (current_period_end)
    WHERE status IN ('active', 'grace');
-- Each attempt to charge for a period: the payment's reference is the id.
CREATE TABLE vip_charges (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id    bigint NOT NULL REFERENCES vip_subscriptions(id),
    member_id          bigint NOT NULL REFERENCES members(id),
    plan_code          text NOT NULL REFERENCES vip_plans(code),
    period_starts_at   timestamptz,  -- NULL for the first: the period starts when paid
    attempt            integer NOT NULL CHECK (attempt >= 1),
    sequence           text NOT NULL CHECK (sequence IN ('first', 'recurring')),
    amount_cents       integer NOT NULL CHECK (amount_cents > 0),
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'failed')),
    payment_id         text,
    checkout_url       text,
    created_at         timestamptz NOT NULL,
    finished_at        timestamptz
);
CREATE UNIQUE INDEX vip_charges_attempt ON vip_charges
    (subscription_id, coalesce(period_starts_at, '-infinity'::timestamptz), attempt);
CREATE INDEX vip_charges_open ON vip_charges (created_at) WHERE status = 'open';
-- Each paid period [starts_at, ends_at) with the benefits it was bought with.
CREATE TABLE vip_periods (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id       bigint NOT NULL REFERENCES vip_subscriptions(id),
    member_id             bigint NOT NULL REFERENCES members(id),
    plan_code             text NOT NULL REFERENCES vip_plans(code),
    charge_id             bigint NOT NULL UNIQUE REFERENCES vip_charges(id),
    payment_id            text,
    amount_cents          integer NOT NULL,
    multiplier_permille   integer NOT NULL,
    monthly_bonus_points  integer NOT NULL,
    free_lottery_tickets  integer NOT NULL,
    starts_at             timestamptz NOT NULL,
    ends_at               timestamptz NOT NULL CHECK (ends_at > starts_at),
    UNIQUE (subscription_id, starts_at)
);
CREATE INDEX vip_periods_member ON vip_periods (member_id, starts_at DESC);
CREATE TABLE vip_subscription_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES vip_subscriptions(id),
    from_status      text,
    to_status        text NOT NULL,
    at               timestamptz NOT NULL,
    why              text NOT NULL
);
CREATE INDEX vip_subscription_events_subscription ON vip_subscription_events (subscription_id, id);
-- The monthly bonus: once per member and Amsterdam month.
CREATE TABLE vip_bonus_grants (
    member_id        bigint NOT NULL REFERENCES members(id),
    month            date NOT NULL,
    subscription_id  bigint NOT NULL REFERENCES vip_subscriptions(id),
    points           integer NOT NULL CHECK (points > 0),
    transaction_id   uuid NOT NULL,
    granted_at       timestamptz NOT NULL,
    PRIMARY KEY (member_id, month)
);
-- An earn's VIP multiplier (NULL: no VIP); multiplier_permille is the combined one.
ALTER TABLE transactions ADD COLUMN vip_multiplier_permille integer;
-- VIP plans give extra free lottery tickets: a member's free tickets in one
-- lottery are numbered 0 (everyone's), 1, 2, ... (a VIP plan's extras).
ALTER TABLE lottery_tickets ADD COLUMN free_index smallint NOT NULL DEFAULT 0
    CHECK (free_index BETWEEN 0 AND 10);
DROP INDEX lottery_tickets_one_free;
CREATE UNIQUE INDEX lottery_tickets_one_free ON lottery_tickets (lottery_id, member_id, free_index)
    WHERE NOT paid
"""

DOWNGRADE = """
DROP INDEX lottery_tickets_one_free;
-- Fails while a VIP member holds extra free tickets in a lottery: never deletes tickets.
CREATE UNIQUE INDEX lottery_tickets_one_free ON lottery_tickets (lottery_id, member_id)
    WHERE NOT paid;
ALTER TABLE lottery_tickets DROP COLUMN free_index;
ALTER TABLE transactions DROP COLUMN vip_multiplier_permille;
DROP TABLE vip_bonus_grants;
DROP TABLE vip_subscription_events;
DROP TABLE vip_periods;
DROP TABLE vip_charges;
DROP TABLE vip_subscriptions;
DROP TABLE vip_plans
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
