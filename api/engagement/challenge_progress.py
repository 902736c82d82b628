"""Challenge progress and rewards: what a member's purchases imply, kept true.

The engagement processor (`process_dirty`, the job `process_engagement`):

1. takes a batch of the activity queue (earns and refunds append their
   member, api/engagement/activity.py) and, in one transaction without any
   account lock (so an earn never waits on it):
   - enrols those members in the open automatic challenges of their audience;
   - recomputes every enrolment's progress and whether it is met from their
     surviving purchases (earns not fully refunded, booked inside the
     enrolment's window; `spend` counts cents less refunds). Progress is
     never counted up or down by events: it is recomputed from the
     transactions, so a refund, a retried job or a second processor always
     lands on the same figure;
   - runs the referrals of those members (api/engagement/referrals.py);
2. then settles every enrolment whose reward does not match (`met <>
   rewarded`, a partial index, so nothing due is forgotten even if the
   process died between the two steps), each in a transaction of its own
   that locks the member's accounts first, as an earn does: pays the reward
   of a met one (challenge still active, member active) or reverses the
   standing reward of one a refund made unmet, with the ledger entry
   (api/ledger/rewards.py), the `challenge_rewards` row and an inbox message.

"Pays exactly once": the flag, the reward row and the ledger entry change
in one transaction with the enrolment's row locked and re-read, and a unique
index allows one standing reward per enrolment.

Progress by kind (purchases = surviving earns in the window, at the
challenge's partners when it names any):
- spend: cents; purchases: count; distinct_partners: different partners;
- weekly_streak: the longest run of consecutive Amsterdam (ISO) weeks with a
  purchase;
- nth_purchase: the member's purchases ever up to the window's end; met when
  they reach N and fewer than N came before the window (the Nth is in it);
- anniversary: 1 when a purchase falls in the 7 days from a membership
  anniversary (year 1 or later).

Win-back (`offer_winback`): a challenge with `personal` enrolment is offered
to each lapsed member one by one, counted from the offer for the challenge's
`personal_days`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import asyncpg

from api.db.pool import transaction
from api.engagement import activity, inbox
from api.engagement.audience import in_audience
from api.engagement.referrals import process_referrals
from api.ledger.accounts import lock_members, shard_for
from api.ledger.rewards import MEMO_LENGTH_MAX, pay_reward, reverse_reward

PROCESS_BATCH_ROWS_MAX = 500
SETTLE_BATCH_MAX = 500
SETTLE_GROUP_MAX = 10  # members whose earns wait while their rewards post
SETTLE_EVERY_BATCHES = 4
WINBACK_BATCH_MEMBERS_MAX = 1_000
ANNIVERSARY_DAYS = 7
# An unmet enrolment's progress is frozen this long after its window closed:
# no purchase can count any more, and recomputing it would only show less.
FROZEN_AFTER_DAYS = 1
STREAK_TIME_ZONE = "Europe/Amsterdam"
CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"

_AUTO_ENROL = f"""
INSERT INTO challenge_enrolments
    (challenge_id, member_id, enrolled_at, counts_from, counts_until, updated_at)
SELECT c.id, m.id, $2, c.starts_at, c.ends_at, $2
FROM challenges c
JOIN members m ON m.id = ANY($1::bigint[])
WHERE c.status = 'active' AND c.enrolment = 'automatic'
  AND c.starts_at <= $2 AND c.ends_at > $2
  AND NOT EXISTS (SELECT FROM challenge_enrolments e
                  WHERE e.challenge_id = c.id AND e.member_id = m.id)
  AND {in_audience("c.starts_at")}
ON CONFLICT (challenge_id, member_id) DO NOTHING
"""

# Every enrolment of the members, recomputed from their transactions, and
# written back where it changed.
_PROGRESS = f"""
WITH ev AS (
    SELECT e.id, e.member_id, c.kind, c.target, c.partner_ids, e.counts_from, e.counts_until,
           m.created_at AS member_since
    FROM challenge_enrolments e
    JOIN challenges c ON c.id = e.challenge_id
    JOIN members m ON m.id = e.member_id
    WHERE e.member_id = ANY($1::bigint[])
      AND (e.counts_until > $2::timestamptz - interval '{FROZEN_AFTER_DAYS} days'
           OR e.met OR e.rewarded)
),
purchase AS (
    SELECT ev.id, ev.kind, ev.member_since, ev.counts_from, t.partner_id, t.created_at,
           t.amount_cents - t.amount_refunded_cents AS cents
    FROM ev
    JOIN transactions t ON t.member_id = ev.member_id AND t.kind = 'earn'
    WHERE t.amount_refunded_cents < t.amount_cents
      AND t.created_at < ev.counts_until
      AND (t.created_at >= ev.counts_from OR ev.kind = 'nth_purchase')
      AND (cardinality(ev.partner_ids) = 0 OR t.partner_id = ANY(ev.partner_ids))
),
counted AS (
    SELECT id,
           sum(cents) FILTER (WHERE created_at >= counts_from) AS cents,
           count(*) FILTER (WHERE created_at >= counts_from) AS purchases,
           count(*) AS ever,
           count(*) FILTER (WHERE created_at < counts_from) AS before_window,
           count(DISTINCT partner_id) FILTER (WHERE created_at >= counts_from) AS partners,
           count(*) FILTER (
               WHERE created_at >= counts_from
                 AND extract(year FROM age(created_at, member_since)) >= 1
                 AND created_at < member_since
                     + make_interval(years => extract(year FROM age(created_at, member_since))::int)
                     + make_interval(days => {ANNIVERSARY_DAYS})
           ) AS anniversary
    FROM purchase
    GROUP BY id
),
week AS (
    SELECT DISTINCT id,
           date_trunc('week', created_at AT TIME ZONE '{STREAK_TIME_ZONE}')::date AS monday
    FROM purchase
    WHERE kind = 'weekly_streak'
),
run AS (
    SELECT id, monday - (7 * row_number() OVER (PARTITION BY id ORDER BY monday))::int AS grp
    FROM week
),
streak AS (
    SELECT id, max(weeks) AS weeks
    FROM (SELECT id, grp, count(*) AS weeks FROM run GROUP BY id, grp) runs
    GROUP BY id
),
computed AS (
    SELECT ev.id, ev.kind, ev.target,
           CASE ev.kind
               WHEN 'spend' THEN coalesce(counted.cents, 0)
               WHEN 'purchases' THEN coalesce(counted.purchases, 0)
               WHEN 'distinct_partners' THEN coalesce(counted.partners, 0)
               WHEN 'weekly_streak' THEN coalesce(streak.weeks, 0)
               WHEN 'nth_purchase' THEN coalesce(counted.ever, 0)
               WHEN 'anniversary' THEN least(1, coalesce(counted.anniversary, 0))
           END::bigint AS progress,
           coalesce(counted.before_window, 0) AS before_window
    FROM ev
    LEFT JOIN counted ON counted.id = ev.id
    LEFT JOIN streak ON streak.id = ev.id
),
judged AS (
    SELECT id, progress,
           progress >= target AND (kind <> 'nth_purchase' OR before_window < target) AS met
    FROM computed
)
UPDATE challenge_enrolments e
SET progress = judged.progress, met = judged.met, updated_at = $2,
    met_at = CASE WHEN NOT judged.met THEN NULL WHEN e.met THEN e.met_at ELSE $2 END
FROM judged
WHERE e.id = judged.id AND (e.progress, e.met) IS DISTINCT FROM (judged.progress, judged.met)
"""

# Enrolments whose reward does not match whether they are met (the partial
# index `challenge_enrolments_due`), oldest first.
_DUE_IDS = """
SELECT e.id, e.member_id, c.sponsor_id
FROM challenge_enrolments e JOIN challenges c ON c.id = e.challenge_id
WHERE e.met <> e.rewarded AND e.id > $1
ORDER BY e.id LIMIT $2
"""

# One due enrolment, locked, with what paying or reversing it needs.
_DUE = """
SELECT e.id, e.member_id, e.met, e.rewarded, c.name, c.reward_points, c.sponsor_id,
       c.status = 'active' AND m.status = 'active' AS payable,
       r.cycle AS standing_cycle, r.reward_id AS standing_reward,
       (SELECT coalesce(max(cycle), 0) FROM challenge_rewards x WHERE x.enrolment_id = e.id)
           AS last_cycle
FROM challenge_enrolments e
JOIN challenges c ON c.id = e.challenge_id
JOIN members m ON m.id = e.member_id
LEFT JOIN challenge_rewards r ON r.enrolment_id = e.id AND r.reversal_id IS NULL
WHERE e.id = $1
FOR UPDATE OF e
"""


@dataclass(frozen=True, slots=True)
class Processed:
    rows: int  # activity rows taken (earns and refunds looked at)
    rewards_paid: int
    rewards_reversed: int


async def process_dirty(
    pool: asyncpg.Pool, now: datetime, *, batches_max: int | None = None
) -> Processed:
    """Look at the members whose purchases changed, in batches, paying and
    reversing what became due after every few batches (so rewards do not
    wait for a queue that keeps filling). With `batches_max`, stop after that
    many batches: the job (api/jobs/periodic.py) bounds each run, so that the
    `now` a run was started with is never more than a few seconds old (a
    challenge that started since must not be missed for enrolment)."""
    rows = paid = reversed_ = batches = 0
    while True:
        taken = await transaction(pool, lambda conn: _process_batch(conn, now))
        rows += taken
        batches += 1
        done = taken == 0 or batches == batches_max
        if done or batches % SETTLE_EVERY_BATCHES == 0:
            settled = await settle_rewards(pool, now)
            paid += settled[0]
            reversed_ += settled[1]
        if done:
            return Processed(rows, paid, reversed_)


async def _process_batch(conn: asyncpg.Connection, now: datetime) -> int:
    """One batch of the activity queue: enrolment and progress (no ledger
    write, so no account lock: an earn never waits on this), and referrals.
    Returns how many queue rows it took."""
    taken = await activity.take(conn, PROCESS_BATCH_ROWS_MAX)
    if not taken.member_ids:
        return 0
    ids = taken.member_ids
    # The pool plans statements generically, which suits the ledger's key
    # lookups; these set-based statements over a batch of members want
    # plans made for their actual parameters (16 times faster here).
    await conn.execute(CUSTOM_PLANS)
    await conn.execute(_AUTO_ENROL, ids, now)
    # Two processors may hold rows of one member: lock its enrolments in id
    # order first, so their updates queue instead of deadlocking.
    await conn.execute(
        "SELECT id FROM challenge_enrolments WHERE member_id = ANY($1::bigint[])"
        " ORDER BY id FOR UPDATE",
        ids,
    )
    await conn.execute(_PROGRESS, ids, now)
    await process_referrals(conn, ids, now)
    return taken.rows


async def settle_rewards(pool: asyncpg.Pool, now: datetime) -> tuple[int, int]:
    """Pay every met enrolment without a standing reward and reverse every
    standing reward of an unmet one. Returns (paid, reversed).

    A transaction settles up to SETTLE_GROUP_MAX enrolments with one payer
    (the promo budget, or one sponsor) from one shard: it locks all their
    members' accounts first, in id order, then the enrolments, then posts;
    so it holds a single non-member account row, in the order an earn takes
    its rows, and cannot deadlock with one."""
    paid = reversed_ = 0
    after = 0
    while True:
        due = await pool.fetch(_DUE_IDS, after, SETTLE_BATCH_MAX)
        if not due:
            return paid, reversed_
        groups: dict[int | None, list[asyncpg.Record]] = {}
        for row in due:
            groups.setdefault(row["sponsor_id"], []).append(row)
        for rows in groups.values():
            for start in range(0, len(rows), SETTLE_GROUP_MAX):
                group = rows[start : start + SETTLE_GROUP_MAX]
                done = await transaction(pool, partial(_settle_group, group=group, now=now))
                paid += done.count("paid")
                reversed_ += done.count("reversed")
        after = due[-1]["id"]


async def _settle_group(
    conn: asyncpg.Connection, *, group: list[asyncpg.Record], now: datetime
) -> list[str]:
    await lock_members(conn, sorted({row["member_id"] for row in group}))
    shard = shard_for(group[0]["id"])
    outcomes: list[str] = []
    messages: list[inbox.NewMessage] = []
    for row in group:
        due = await conn.fetchrow(_DUE, row["id"])
        if due is None or due["met"] == due["rewarded"]:
            continue  # settled meanwhile (another processor, or a newer recompute)
        if due["met"]:
            if not due["payable"]:
                continue  # withdrawn challenge or inactive member: no new rewards
            reward_id = await pay_reward(
                conn,
                member_id=due["member_id"],
                points=due["reward_points"],
                sponsor_id=due["sponsor_id"],
                memo=f"Challenge: {due['name']}"[:MEMO_LENGTH_MAX],
                now=now,
                shard=shard,
            )
            await conn.execute(_RECORD_PAYMENT, due["id"], due["last_cycle"] + 1, reward_id, now)
            outcomes.append("paid")
        else:
            reversal_id = await reverse_reward(conn, due["standing_reward"], now, shard=shard)
            await conn.execute(_RECORD_REVERSAL, due["id"], due["standing_cycle"], reversal_id, now)
            outcomes.append("reversed")
        messages.append(_message(due))
    await inbox.post_many(conn, messages, now)
    return outcomes


# The enrolment's reward record and flag (the row is locked by `_DUE`).
_RECORD_PAYMENT = """
WITH flagged AS (
    UPDATE challenge_enrolments SET rewarded = true, updated_at = $4 WHERE id = $1 RETURNING id
)
INSERT INTO challenge_rewards (enrolment_id, cycle, reward_id) SELECT id, $2, $3 FROM flagged
"""
_RECORD_REVERSAL = """
WITH flagged AS (
    UPDATE challenge_enrolments SET rewarded = false, updated_at = $4 WHERE id = $1 RETURNING id
)
UPDATE challenge_rewards r SET reversal_id = $3
FROM flagged WHERE r.enrolment_id = flagged.id AND r.cycle = $2
"""


def _message(due: asyncpg.Record) -> inbox.NewMessage:
    """Completed (paid) or reversed, once per payment cycle."""
    if due["met"]:
        kind, cycle, what = "challenge_completed", due["last_cycle"] + 1, "paid"
    else:
        kind, cycle, what = "challenge_reversed", due["standing_cycle"], "reversed"
    return inbox.NewMessage(
        member_id=due["member_id"],
        kind=kind,
        params={"challenge": due["name"], "points": due["reward_points"]},
        dedupe_key=f"challenge:{due['id']}:{cycle}:{what}",
    )


# Win-back -------------------------------------------------------------------

_OFFER = f"""
WITH offered AS (
    INSERT INTO challenge_enrolments
        (challenge_id, member_id, enrolled_at, counts_from, counts_until, updated_at)
    SELECT c.id, m.id, $1::timestamptz, $1::timestamptz,
           least(c.ends_at, $1::timestamptz + make_interval(days => c.personal_days)),
           $1::timestamptz
    FROM challenges c
    JOIN members m ON true
    WHERE c.status = 'active' AND c.enrolment = 'personal'
      AND c.starts_at <= $1::timestamptz AND c.ends_at > $1::timestamptz
      AND NOT EXISTS (SELECT FROM challenge_enrolments e
                      WHERE e.challenge_id = c.id AND e.member_id = m.id)
      AND {in_audience("$1::timestamptz")}
    LIMIT $2
    ON CONFLICT (challenge_id, member_id) DO NOTHING
    RETURNING challenge_id, member_id, counts_until
)
SELECT o.member_id, o.counts_until, c.id AS challenge_id, c.name, c.description, c.reward_points
FROM offered o JOIN challenges c ON c.id = o.challenge_id
"""


def _last_day(until: datetime) -> str:
    """The last Amsterdam day an offer counts (its window ends before `until`)."""
    return (
        (until - timedelta(microseconds=1))
        .astimezone(ZoneInfo(STREAK_TIME_ZONE))
        .date()
        .isoformat()
    )


async def offer_winback(pool: asyncpg.Pool, now: datetime) -> int:
    """Offer every open win-back (personal) challenge to the lapsed members
    who have not had it, in batches; each offer is an enrolment of their own
    and an inbox message. Returns how many offers were made."""
    total = 0
    while True:
        made = await transaction(pool, lambda conn: _offer_batch(conn, now))
        total += made
        if made < WINBACK_BATCH_MEMBERS_MAX:
            return total


async def _offer_batch(conn: asyncpg.Connection, now: datetime) -> int:
    await conn.execute(CUSTOM_PLANS)
    offers = await conn.fetch(_OFFER, now, WINBACK_BATCH_MEMBERS_MAX)
    await inbox.post_many(
        conn,
        [
            inbox.NewMessage(
                member_id=o["member_id"],
                kind="challenge_offer",
                params={
                    "challenge": o["name"],
                    "points": o["reward_points"],
                    "until": _last_day(o["counts_until"]),
                    "description": o["description"],
                },
                dedupe_key=f"offer:{o['challenge_id']}",
            )
            for o in offers
        ],
        now,
    )
    return len(offers)
