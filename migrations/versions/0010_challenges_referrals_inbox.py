"""Challenges, win-back offers, referrals, rewards in the ledger, the inbox (issue 5).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

import re

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ENTRY_KINDS = ("reward", "reward_reversal")

UPGRADE = """
-- Rewards are transactions of the member's with no partner at the till: the
-- programme (promo budget) or a sponsoring partner pays them. `sponsor_id`
-- is the partner charged for a sponsored reward (settlement's
-- sponsored_rewards line); `memo` says what the reward was for.
ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('earn', 'burn', 'refund', 'reward', 'reward_reversal'));
ALTER TABLE transactions ALTER COLUMN partner_id DROP NOT NULL;
ALTER TABLE transactions
    ADD COLUMN sponsor_id bigint REFERENCES partners(id),
    ADD COLUMN memo text CHECK (length(memo) BETWEEN 1 AND 200),
    ADD CONSTRAINT transactions_partner_or_reward
        CHECK ((partner_id IS NULL) = (kind IN ('reward', 'reward_reversal'))),
    ADD CONSTRAINT transactions_sponsor_of_reward
        CHECK (sponsor_id IS NULL OR kind IN ('reward', 'reward_reversal'));

-- A challenge: what counts (`kind`, `target`, optionally only purchases at
-- `partner_ids`), when (purchases booked in [starts_at, ends_at)), who
-- (`audience`), how members take part (`enrolment`), and the reward.
--   spend              target = cents spent (less refunds)
--   purchases          target = purchases not fully refunded
--   distinct_partners  target = different partners bought at (the coalition challenge)
--   weekly_streak      target = consecutive Amsterdam weeks with a purchase
--   nth_purchase       target = N: the member's Nth purchase ever falls in the window
--   anniversary        target = 1: a purchase in the 7 days from a membership anniversary
-- Enrolment: opt_in (the member joins), automatic (everyone in the audience,
-- counted from the start), personal (win-back: lapsed members are offered it
-- one by one by a job, counted from the offer for `personal_days`).
CREATE TABLE challenges (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    description         text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    kind                text NOT NULL CHECK (kind IN ('spend', 'purchases', 'distinct_partners',
                            'weekly_streak', 'nth_purchase', 'anniversary')),
    target              bigint NOT NULL CHECK (target BETWEEN 1 AND 100000000),
    partner_ids         bigint[] NOT NULL DEFAULT '{}',
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL,
    enrolment           text NOT NULL CHECK (enrolment IN ('opt_in', 'automatic', 'personal')),
    personal_days       integer CHECK (personal_days BETWEEN 1 AND 366),
    audience            text NOT NULL CHECK (audience IN ('everyone', 'tier', 'vip', 'lapsed')),
    audience_tier       text REFERENCES tiers(code),
    lapsed_days         integer CHECK (lapsed_days BETWEEN 1 AND 3650),
    reward_points       bigint NOT NULL CHECK (reward_points BETWEEN 1 AND 1000000),
    -- NULL: the programme's promo budget pays; else this partner is charged.
    sponsor_id          bigint REFERENCES partners(id),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'withdrawn')),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    create_key          text UNIQUE CHECK (length(create_key) BETWEEN 1 AND 255),
    CHECK (ends_at > starts_at),
    CHECK ((audience = 'tier') = (audience_tier IS NOT NULL)),
    CHECK ((audience = 'lapsed') = (lapsed_days IS NOT NULL)),
    CHECK ((enrolment = 'personal') = (personal_days IS NOT NULL)),
    CHECK (enrolment <> 'personal' OR audience = 'lapsed'),
    CHECK (kind <> 'anniversary' OR target = 1)
);
CREATE INDEX challenges_open ON challenges (ends_at) WHERE status = 'active';

-- A member taking part. Purchases booked in [counts_from, counts_until)
-- count. `progress` and `met` are what the member's surviving purchases
-- imply, kept by the engagement processor; `rewarded` is whether a reward
-- stands (paid and not reversed), changed only together with the ledger entry.
CREATE TABLE challenge_enrolments (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    challenge_id   bigint NOT NULL REFERENCES challenges(id),
    member_id      bigint NOT NULL REFERENCES members(id),
    enrolled_at    timestamptz NOT NULL,
    counts_from    timestamptz NOT NULL,
    counts_until   timestamptz NOT NULL,
    progress       bigint NOT NULL DEFAULT 0 CHECK (progress >= 0),
    met            boolean NOT NULL DEFAULT false,
    met_at         timestamptz,
    rewarded       boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL,
    UNIQUE (challenge_id, member_id),
    CHECK (counts_until > counts_from)
);
CREATE INDEX challenge_enrolments_member ON challenge_enrolments (member_id, counts_until DESC);
-- Progress changes with most purchases and no indexed column does: room on
-- each page lets those updates stay heap-only (no index writes).
ALTER TABLE challenge_enrolments SET (fillfactor = 70);

-- Every reward a challenge paid and, if it was reversed, the reversal. The
-- cycle numbers payments of one enrolment (met, unmet by a refund, met again).
CREATE TABLE challenge_rewards (
    enrolment_id  bigint NOT NULL REFERENCES challenge_enrolments(id),
    cycle         integer NOT NULL CHECK (cycle > 0),
    reward_id     uuid NOT NULL UNIQUE REFERENCES transactions(id),
    reversal_id   uuid UNIQUE REFERENCES transactions(id),
    PRIMARY KEY (enrolment_id, cycle)
);
-- At most one standing (unreversed) reward per enrolment.
CREATE UNIQUE INDEX challenge_rewards_one_standing ON challenge_rewards (enrolment_id)
    WHERE reversal_id IS NULL;

-- Purchases that changed (earn and refund statements append their member),
-- for the engagement processor to look at: an append-only queue, so an earn
-- never waits on the processor; the processor takes rows with SKIP LOCKED and
-- deletes them in the transaction that recomputes those members. No foreign
-- key: the earn's member exists, and a key check would lock its row.
CREATE TABLE engagement_activity (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id  bigint NOT NULL,
    booked_at  timestamptz NOT NULL
);
-- Enrolments whose reward does not match whether they are met: what the
-- processor pays or reverses, each in a transaction of its own.
CREATE INDEX challenge_enrolments_due ON challenge_enrolments (id) WHERE met <> rewarded;

-- Referrals. A member's code is made when first asked for. A referral links a
-- new member (once) to who referred them; both are rewarded when the new
-- member's first qualifying purchase is booked.
CREATE TABLE referral_codes (
    member_id   bigint PRIMARY KEY REFERENCES members(id),
    code        text NOT NULL UNIQUE CHECK (code ~ '^[0-9A-Z]{8}$'),
    created_at  timestamptz NOT NULL
);
CREATE TABLE referrals (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referrer_id          bigint NOT NULL REFERENCES members(id),
    referee_id           bigint NOT NULL UNIQUE REFERENCES members(id),
    created_at           timestamptz NOT NULL,
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN (
                             'pending', 'rewarded', 'reversed', 'capped')),
    qualified_at         timestamptz,
    -- The minimum purchase it qualified under: a reward stands while a
    -- purchase of at least this does, whatever the terms say later.
    qualified_min_purchase_cents bigint CHECK (qualified_min_purchase_cents > 0),
    referrer_reward_id   uuid UNIQUE REFERENCES transactions(id),
    referee_reward_id    uuid UNIQUE REFERENCES transactions(id),
    referrer_reversal_id uuid UNIQUE REFERENCES transactions(id),
    referee_reversal_id  uuid UNIQUE REFERENCES transactions(id),
    CHECK (referrer_id <> referee_id)
);
CREATE INDEX referrals_referrer ON referrals (referrer_id, qualified_at);
-- The programme's referral terms: one row.
CREATE TABLE referral_settings (
    id                      boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled                 boolean NOT NULL DEFAULT true,
    referrer_points         bigint NOT NULL DEFAULT 250 CHECK (referrer_points BETWEEN 0 AND 1000000),
    referee_points          bigint NOT NULL DEFAULT 250 CHECK (referee_points BETWEEN 0 AND 1000000),
    min_purchase_cents      bigint NOT NULL DEFAULT 1000 CHECK (min_purchase_cents BETWEEN 1 AND 100000000),
    rewards_per_month_max   integer NOT NULL DEFAULT 5 CHECK (rewards_per_month_max BETWEEN 0 AND 1000),
    join_within_days        integer NOT NULL DEFAULT 30 CHECK (join_within_days BETWEEN 1 AND 365),
    updated_at              timestamptz
);
INSERT INTO referral_settings DEFAULT VALUES;

-- The member's in-app inbox. A message is stored as its kind and parameters
-- and rendered when read, so it addresses the member as their profile says
-- now. `dedupe_key` makes a job that announces something announce it once.
CREATE TABLE inbox_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id   bigint NOT NULL REFERENCES members(id),
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z_]{0,39}$'),
    params      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    read_at     timestamptz,
    dedupe_key  text CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    UNIQUE (member_id, dedupe_key)
);
CREATE INDEX inbox_messages_member ON inbox_messages (member_id, id DESC);
CREATE INDEX inbox_messages_unread ON inbox_messages (member_id) WHERE read_at IS NULL
"""

DOWNGRADE = """
DROP TABLE inbox_messages, referral_settings, referrals, referral_codes, engagement_activity,
    challenge_rewards, challenge_enrolments, challenges;
DELETE FROM transactions WHERE kind IN ('reward', 'reward_reversal');
ALTER TABLE transactions DROP CONSTRAINT transactions_partner_or_reward,
    DROP CONSTRAINT transactions_sponsor_of_reward, DROP COLUMN sponsor_id, DROP COLUMN memo;
ALTER TABLE transactions ALTER COLUMN partner_id SET NOT NULL;
ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('earn', 'burn', 'refund'))
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


def _extend_kinds(added: tuple[str, ...], *, remove: bool) -> None:
    table, constraint = "journal_entries", "journal_entries_kind_check"
    kinds = [kind for kind in _kinds(table, constraint) if kind not in added]
    listed = ", ".join(f"'{kind}'" for kind in (kinds if remove else [*kinds, *added]))
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {constraint} CHECK (kind IN ({listed}))")


def upgrade() -> None:
    _extend_kinds(ENTRY_KINDS, remove=False)
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
    _extend_kinds(ENTRY_KINDS, remove=True)
