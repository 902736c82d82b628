"""Challenge progress and rewards: what a member's purchases imply, kept true.

The engagement processor takes members whose purchases changed (earns and
refunds mark them, api/engagement/activity.py) and, for each, in one
transaction:

1. enrols them in the open automatic challenges of their audience;
2. recomputes every enrolment's progress from the member's surviving
   purchases (earns not fully refunded, booked inside the enrolment's
   window; `spend` counts cents less refunds). Progress is never counted up
   or down by events: it is recomputed from the transactions, so a refund,
   a retried job or a second processor always lands on the same figure;
3. pays the reward of an enrolment that is met and has none standing (the
   challenge still active), and reverses the standing reward of one that is
   no longer met (a refund took a purchase away), each with its ledger entry
   (api/ledger/rewards.py), its `challenge_rewards` row and an inbox message.

"Pays exactly once" is the `rewarded` flag changing in the same transaction
as the ledger entry, under the member's account locks, and a unique index
allowing one standing reward per enrolment.

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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from api.db.pool import transaction
from api.engagement import activity, inbox
from api.engagement.audience import in_audience
from api.engagement.referrals import process_referrals
from api.ledger.accounts import lock_members
from api.ledger.entries import LedgerInvariantError
from api.ledger.rewards import MEMO_LENGTH_MAX, pay_reward, reverse_reward

PROCESS_BATCH_MEMBERS_MAX = 200
WINBACK_BATCH_MEMBERS_MAX = 1_000
ANNIVERSARY_DAYS = 7
STREAK_TIME_ZONE = "Europe/Amsterdam"

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

# Enrolments whose reward does not match whether they are met.
_DUE = """
SELECT e.id, e.member_id, e.met, c.name, c.reward_points, c.sponsor_id,
       r.cycle AS standing_cycle, r.reward_id AS standing_reward,
       (SELECT coalesce(max(cycle), 0) FROM challenge_rewards x WHERE x.enrolment_id = e.id)
           AS last_cycle
FROM challenge_enrolments e
JOIN challenges c ON c.id = e.challenge_id
JOIN members m ON m.id = e.member_id
LEFT JOIN challenge_rewards r ON r.enrolment_id = e.id AND r.reversal_id IS NULL
WHERE e.member_id = ANY($1::bigint[])
  AND ((e.met AND NOT e.rewarded AND c.status = 'active' AND m.status = 'active')
       OR (NOT e.met AND e.rewarded))
ORDER BY e.member_id, e.id
"""


@dataclass(frozen=True, slots=True)
class Processed:
    members: int
    rewards_paid: int
    rewards_reversed: int


async def process_dirty(pool: asyncpg.Pool, now: datetime) -> int:
    """Process every marked member, in batches; returns how many. The job
    (api/jobs/periodic.py) runs it every few seconds."""
    total = 0
    while True:
        done = await transaction(pool, lambda conn: _process_batch(conn, now))
        if done.members == 0:
            return total
        total += done.members


# Members marked for processing, and the referrers a referral may pay.
_CANDIDATES = """
WITH marked AS (
    SELECT member_id FROM engagement_dirty ORDER BY marked_at LIMIT $1
)
SELECT member_id FROM marked
UNION
SELECT r.referrer_id FROM referrals r JOIN marked ON marked.member_id = r.referee_id
WHERE r.status IN ('pending', 'rewarded')
"""


async def _process_batch(conn: asyncpg.Connection, now: datetime) -> Processed:
    # Lock order: the accounts of every member this batch may post for (the
    # marked members and the referrers their referrals pay), in id order,
    # before taking the marks. An earn holds its member's accounts while it
    # marks that member; taking the mark first would deadlock with it.
    candidates = [r["member_id"] for r in await conn.fetch(_CANDIDATES, PROCESS_BATCH_MEMBERS_MAX)]
    if not candidates:
        return Processed(0, 0, 0)
    await lock_members(conn, sorted(candidates))
    member_ids = await activity.take_these(conn, candidates)
    if not member_ids:
        return Processed(0, 0, 0)  # another processor took them while we waited
    return await process_members(conn, member_ids, now)


async def process_members(
    conn: asyncpg.Connection, member_ids: Sequence[int], now: datetime
) -> Processed:
    """Enrol, recompute and settle rewards for these members, in the caller's
    transaction (which must hold their accounts' locks, as `_process_batch`
    does, or be the only writer, as in tests)."""
    ids = sorted(member_ids)
    await conn.execute(_AUTO_ENROL, ids, now)
    await conn.execute(_PROGRESS, ids, now)
    messages: list[inbox.NewMessage] = []
    due = await conn.fetch(_DUE, ids)
    for enrolment in due:
        if enrolment["met"]:
            await _pay(conn, enrolment, now)
        else:
            await _reverse(conn, enrolment, now)
        messages.append(_message(enrolment))
    await inbox.post_many(conn, messages, now)
    await process_referrals(conn, ids, now)
    paid = sum(1 for e in due if e["met"])
    return Processed(len(ids), paid, len(due) - paid)


# The enrolment's reward record and flag, in one statement; the flag's guard
# (`rewarded <> $3`) is what a second payment would trip over.
_RECORD_PAYMENT = """
WITH flagged AS (
    UPDATE challenge_enrolments SET rewarded = true, updated_at = $4
    WHERE id = $1 AND NOT rewarded RETURNING id
)
INSERT INTO challenge_rewards (enrolment_id, cycle, reward_id)
SELECT id, $2, $3 FROM flagged
RETURNING enrolment_id
"""
_RECORD_REVERSAL = """
WITH flagged AS (
    UPDATE challenge_enrolments SET rewarded = false, updated_at = $4
    WHERE id = $1 AND rewarded RETURNING id
)
UPDATE challenge_rewards r SET reversal_id = $3
FROM flagged WHERE r.enrolment_id = flagged.id AND r.cycle = $2 AND r.reversal_id IS NULL
RETURNING r.enrolment_id
"""


async def _pay(conn: asyncpg.Connection, due: asyncpg.Record, now: datetime) -> None:
    reward_id = await pay_reward(
        conn,
        member_id=due["member_id"],
        points=due["reward_points"],
        sponsor_id=due["sponsor_id"],
        memo=f"Challenge: {due['name']}"[:MEMO_LENGTH_MAX],
        now=now,
    )
    recorded = await conn.fetchval(
        _RECORD_PAYMENT, due["id"], due["last_cycle"] + 1, reward_id, now
    )
    if recorded is None:  # the caller's lock should make this impossible
        raise LedgerInvariantError(f"enrolment {due['id']} was rewarded meanwhile")


async def _reverse(conn: asyncpg.Connection, due: asyncpg.Record, now: datetime) -> None:
    reversal_id = await reverse_reward(conn, due["standing_reward"], now)
    recorded = await conn.fetchval(
        _RECORD_REVERSAL, due["id"], due["standing_cycle"], reversal_id, now
    )
    if recorded is None:
        raise LedgerInvariantError(f"enrolment {due['id']} was reversed meanwhile")


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
