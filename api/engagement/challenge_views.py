"""Challenges as a member sees them, and joining one.

A member sees:
- their enrolments in challenges still open to them (the enrolment's window
  has not ended, the challenge is not withdrawn), and those they met in the
  last RECENT_DAYS (with the reward, once paid);
- open opt-in challenges whose audience they are in now, to join;
- open automatic challenges whose audience they were in at the start, not
  yet counted for them (the engagement processor enrols them at their next
  purchase): shown at progress 0, "counts automatically".

Personal (win-back) challenges appear only once a job has offered them to
the member (an enrolment). An nth_purchase challenge is hidden from a
member who made N purchases before it would count for them: the Nth can no
longer fall in its window.

Plain Python and SQL; no web framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from api.db.pool import transaction
from api.engagement.audience import in_audience
from api.errors import Conflict, Forbidden, NotFound

RECENT_DAYS = 30
CHALLENGES_LISTED_MAX = 50

STATE_TEXT = {
    "open": "Open to join",
    "joined": "Joined",
    "automatic": "Counts automatically",
    "met": "Completed: the reward is on its way",
    "rewarded": "Completed, reward paid",
}


def euros(cents: int) -> str:
    """1250 -> "€12.50"."""
    return f"€{cents // 100:,}.{cents % 100:02d}"


def _count(n: int, target: int, one: str, many: str) -> str:
    return f"{n} of {target} {one if target == 1 else many}"


def progress_text(kind: str, progress: int, target: int) -> str:
    """What the progress bar says, in words."""
    shown = min(progress, target)
    if kind == "spend":
        return f"{euros(shown)} of {euros(target)}"
    if kind == "purchases":
        return _count(shown, target, "purchase", "purchases")
    if kind == "distinct_partners":
        return _count(shown, target, "partner", "partners")
    if kind == "weekly_streak":
        return _count(shown, target, "week", "weeks in a row")
    if kind == "nth_purchase":
        return f"purchase {shown} of {target}"
    if kind == "anniversary":
        return (
            "bought in the week of your anniversary"
            if progress >= 1
            else "buy in the week of your anniversary"
        )
    raise ValueError(f"unknown challenge kind {kind!r}")


@dataclass(frozen=True, slots=True)
class MemberChallenge:
    id: int
    name: str
    description: str
    kind: str
    target: int
    progress: int
    reward_points: int
    sponsor_name: str | None  # None: the programme pays
    enrolment: str
    starts_at: datetime
    ends_at: datetime
    enrolled: bool
    counts_from: datetime | None  # the member's window, once enrolled
    counts_until: datetime | None
    met: bool
    rewarded: bool

    @property
    def state(self) -> str:
        """open (can join), joined, automatic, met, or rewarded."""
        if self.rewarded:
            return "rewarded"
        if self.met:
            return "met"
        if self.enrolment == "automatic":
            return "automatic"
        return "joined" if self.enrolled else "open"

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]

    @property
    def can_join(self) -> bool:
        return self.state == "open"

    @property
    def until(self) -> datetime:
        """When purchases stop counting for this member (exclusive)."""
        return self.counts_until if self.counts_until is not None else self.ends_at

    @property
    def last_moment(self) -> datetime:
        """The last instant that counts, for "until 31 Dec" (the end is exclusive)."""
        return self.until - timedelta(microseconds=1)

    @property
    def progress_shown(self) -> int:
        """The progress bar's value: never past its maximum."""
        return min(self.progress, self.target)

    @property
    def progress_text(self) -> str:
        return progress_text(self.kind, self.progress, self.target)


_CHALLENGE_COLUMNS = """
    c.id, c.name, c.description, c.kind, c.target, c.reward_points, c.enrolment,
    c.starts_at, c.ends_at, s.name AS sponsor_name
"""

_ENROLLED = f"""
SELECT {_CHALLENGE_COLUMNS}, true AS enrolled, e.progress, e.met, e.rewarded,
       e.counts_from, e.counts_until
FROM challenge_enrolments e
JOIN challenges c ON c.id = e.challenge_id
LEFT JOIN partners s ON s.id = c.sponsor_id
WHERE e.member_id = $1
  AND ($3::bigint IS NULL OR c.id = $3)
  AND ($3::bigint IS NOT NULL
       OR (c.status = 'active' AND e.counts_until > $2)
       OR (e.met AND e.met_at >= $2 - make_interval(days => {RECENT_DAYS})))
ORDER BY e.counts_until, c.id
LIMIT {CHALLENGES_LISTED_MAX}
"""

# Purchases (earns not fully refunded) a member made before an instant, for
# nth_purchase: the challenge's window starts at its start (automatic) or
# when the member joins (opt-in: now).
_BEFORE_WINDOW = """
(SELECT count(*) FROM transactions t
 WHERE t.member_id = m.id AND t.kind = 'earn' AND t.amount_refunded_cents < t.amount_cents
   AND t.created_at < CASE WHEN c.enrolment = 'automatic' THEN c.starts_at ELSE $2 END)
"""

_JOINABLE = f"""
SELECT {_CHALLENGE_COLUMNS}, false AS enrolled,
       CASE WHEN c.kind = 'nth_purchase' THEN {_BEFORE_WINDOW} ELSE 0 END AS progress,
       false AS met, false AS rewarded, NULL::timestamptz AS counts_from,
       NULL::timestamptz AS counts_until
FROM challenges c
JOIN members m ON m.id = $1
LEFT JOIN partners s ON s.id = c.sponsor_id
WHERE c.status = 'active' AND c.starts_at <= $2 AND $2 < c.ends_at
  AND c.enrolment IN ('opt_in', 'automatic')
  AND NOT EXISTS (SELECT FROM challenge_enrolments e
                  WHERE e.challenge_id = c.id AND e.member_id = m.id)
  AND CASE WHEN c.enrolment = 'automatic' THEN {in_audience("c.starts_at")}
           ELSE {in_audience("$2::timestamptz")} END
  AND (c.kind <> 'nth_purchase' OR {_BEFORE_WINDOW} < c.target)
ORDER BY c.ends_at, c.id
LIMIT {CHALLENGES_LISTED_MAX}
"""


def _view(row: asyncpg.Record) -> MemberChallenge:
    return MemberChallenge(**dict(row))


async def list_member_challenges(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> list[MemberChallenge]:
    """The member's challenges (ending soonest first), then those they can
    join or that count for them automatically."""
    enrolled = await db.fetch(_ENROLLED, member_id, now, None)
    joinable = await db.fetch(_JOINABLE, member_id, now)
    return [_view(r) for r in [*enrolled, *joinable]]


async def member_challenge(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, challenge_id: int, now: datetime
) -> MemberChallenge | None:
    """One challenge the member is enrolled in, whatever its state."""
    row = await db.fetchrow(_ENROLLED, member_id, now, challenge_id)
    return None if row is None else _view(row)


@dataclass(frozen=True, slots=True)
class Joined:
    challenge: MemberChallenge
    replayed: bool  # the member had joined before; nothing was written


_JOIN_CHECK = f"""
SELECT c.enrolment, c.status, c.kind, c.target, c.starts_at, c.ends_at,
       {in_audience("$3::timestamptz")} AS in_audience,
       (c.kind = 'nth_purchase' AND {_BEFORE_WINDOW.replace("$2", "$3")} >= c.target)
           AS too_late,
       EXISTS (SELECT FROM challenge_enrolments e
               WHERE e.challenge_id = c.id AND e.member_id = m.id) AS enrolled
FROM challenges c
JOIN members m ON m.id = $2
WHERE c.id = $1
FOR SHARE OF c
"""


async def join_challenge(
    pool: asyncpg.Pool, member_id: int, challenge_id: int, now: datetime
) -> Joined:
    """Enrol the member in an open opt-in challenge of their audience, counting
    purchases from now until the challenge ends. Joining again returns the
    enrolment. Problems: `challenge_not_found` (404), `challenge_not_joinable`
    (409: automatic, personal or withdrawn), `challenge_closed` (409: not yet
    started or ended), `not_in_audience` (403)."""

    async def work(conn: asyncpg.Connection) -> bool:
        # FOR SHARE: a withdrawal (FOR UPDATE) waits for this join, or this
        # join sees the withdrawal.
        row = await conn.fetchrow(_JOIN_CHECK, challenge_id, member_id, now)
        if row is None:
            raise NotFound("there is no such challenge", code="challenge_not_found")
        if row["enrolled"]:
            return False
        if row["status"] != "active" or row["enrolment"] != "opt_in":
            why = (
                "it was withdrawn"
                if row["status"] != "active"
                else "members take part automatically"
                if row["enrolment"] == "automatic"
                else "it is a personal offer"
            )
            raise Conflict(f"this challenge cannot be joined: {why}", code="challenge_not_joinable")
        if not row["starts_at"] <= now < row["ends_at"]:
            when = "has not started yet" if now < row["starts_at"] else "has ended"
            raise Conflict(f"this challenge {when}", code="challenge_closed")
        if not row["in_audience"]:
            raise Forbidden("this challenge is for other members", code="not_in_audience")
        if row["too_late"]:
            raise Forbidden(
                f"you have made {row['target']} purchases already: this challenge is for"
                " members before that milestone",
                code="not_in_audience",
            )
        inserted = await conn.fetchval(
            "INSERT INTO challenge_enrolments"
            " (challenge_id, member_id, enrolled_at, counts_from, counts_until, updated_at)"
            " VALUES ($1, $2, $3, $3, $4, $3)"
            " ON CONFLICT (challenge_id, member_id) DO NOTHING RETURNING id",
            challenge_id,
            member_id,
            now,
            row["ends_at"],
        )
        return inserted is not None

    joined_now = await transaction(pool, work)
    found = await member_challenge(pool, member_id, challenge_id, now)
    if found is None:
        raise RuntimeError("a challenge enrolment vanished after joining")
    return Joined(challenge=found, replayed=not joined_now)
