"""The loyalty tracker: a monthly pulse survey in the wallet (issue 7).

Three questions, at most once per Amsterdam calendar month per member:

- keep:       "Will you keep using Kring's partners?"      1 (certainly not) - 5 (certainly)
- more:       "Will you use Kring's partners more?"        1 - 5
- recommend:  "Would you recommend Kring to a friend?"     0 - 10 (NPS)

Shown means offered: the first time the wallet home page (or GET
/member/v1/pulse) looks in a month, a row is written with `offered_at`; the
primary key (member, month) makes "once a month" a constraint, so two tabs
racing offer it once. The card is shown on the view that offered it, and not
again that month. A member answers (all three) or dismisses, once per month:
a repeat of the same answer returns the stored one (idempotent per
member-month), a different one is `pulse_already_answered`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import asyncpg

from api.errors import Conflict, DomainError
from api.settlement.periods import SETTLEMENT_TIMEZONE

LIKERT_MIN = 1
LIKERT_MAX = 5
RECOMMEND_MAX = 10
Status = Literal["offered", "answered", "dismissed"]
QUESTIONS = {
    "keep": "Will you keep using Kring's partners?",
    "more": "Will you use Kring's partners more than you do now?",
    "recommend": "How likely are you to recommend Kring to a friend?",
}


@dataclass(frozen=True, slots=True)
class Pulse:
    month: date
    status: Status
    offered_at: datetime
    keep_score: int | None = None
    more_score: int | None = None
    recommend_score: int | None = None
    answered_at: datetime | None = None
    dismissed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    pulse: Pulse
    new: bool  # offered by this call: the wallet shows the card only then


def pulse_month(now: datetime) -> date:
    local = now.astimezone(SETTLEMENT_TIMEZONE)
    return date(local.year, local.month, 1)


_COLUMNS = """month, offered_at, answered_at, dismissed_at, keep_score, more_score,
    recommend_score"""


def _pulse(row: Mapping[str, Any]) -> Pulse:
    status: Status = (
        "answered"
        if row["answered_at"] is not None
        else "dismissed"
        if row["dismissed_at"] is not None
        else "offered"
    )
    return Pulse(status=status, **dict(row))


async def offer(db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime) -> Offer:
    """This month's pulse for the member, offering it if it was not yet."""
    month = pulse_month(now)
    row = await db.fetchrow(
        f"""
        WITH new AS (
            INSERT INTO pulse_surveys (member_id, month, offered_at)
            SELECT $1, $2, $3 FROM members WHERE id = $1 AND status = 'active'
            ON CONFLICT (member_id, month) DO NOTHING
            RETURNING {_COLUMNS}
        )
        SELECT true AS new, {_COLUMNS} FROM new
        UNION ALL
        SELECT false, {_COLUMNS} FROM pulse_surveys WHERE member_id = $1 AND month = $2
        LIMIT 1
        """,
        member_id,
        month,
        now,
    )
    if row is None:
        raise Conflict("this member account is not active", code="member_not_active")
    new = bool(row["new"])
    return Offer(_pulse({k: v for k, v in row.items() if k != "new"}), new)


def _check(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DomainError(
            f"{name} must be a whole number from {low} to {high}", code=f"invalid_{name}"
        )
    return value


async def answer(
    db: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    *,
    keep: object,
    more: object,
    recommend: object,
    now: datetime,
) -> Pulse:
    """Answer this month's pulse (offering it first if needed), once."""
    scores = (
        _check("keep", keep, LIKERT_MIN, LIKERT_MAX),
        _check("more", more, LIKERT_MIN, LIKERT_MAX),
        _check("recommend", recommend, 0, RECOMMEND_MAX),
    )
    current = (await offer(db, member_id, now)).pulse
    row = await db.fetchrow(
        f"""
        UPDATE pulse_surveys SET answered_at = $3, keep_score = $4, more_score = $5,
                                 recommend_score = $6
        WHERE member_id = $1 AND month = $2 AND answered_at IS NULL AND dismissed_at IS NULL
        RETURNING {_COLUMNS}
        """,
        member_id,
        current.month,
        now,
        *scores,
    )
    if row is not None:
        return _pulse(row)
    stored = (await offer(db, member_id, now)).pulse
    if stored.status == "dismissed":
        raise Conflict("you dismissed this month's questions", code="pulse_dismissed")
    if (stored.keep_score, stored.more_score, stored.recommend_score) == scores:
        return stored  # the same answer again: the first one stands
    raise Conflict("you answered this month's questions already", code="pulse_already_answered")


async def dismiss(db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime) -> Pulse:
    """Not this month. Dismissing again changes nothing; after answering it is refused."""
    current = (await offer(db, member_id, now)).pulse
    row = await db.fetchrow(
        f"""
        UPDATE pulse_surveys SET dismissed_at = $3
        WHERE member_id = $1 AND month = $2 AND answered_at IS NULL AND dismissed_at IS NULL
        RETURNING {_COLUMNS}
        """,
        member_id,
        current.month,
        now,
    )
    if row is not None:
        return _pulse(row)
    stored = (await offer(db, member_id, now)).pulse
    if stored.status == "answered":
        raise Conflict("you answered this month's questions already", code="pulse_already_answered")
    return stored
