"""Challenge definitions: creating, reading, changing and withdrawing them.

A challenge says what counts (`kind`, `target`, optionally only purchases at
`partner_ids`), when (`starts_at` to `ends_at`), who (`audience`), how members
take part (`enrolment`) and the reward (`reward_points`, paid by the promo
budget or charged to `sponsor_id`). Migration 0010 holds the table and what
each kind means; progress and rewards are `challenge_progress`'s, what a
member sees is `challenge_views`'s.

What may change once a challenge exists:
- name, description and `ends_at` at any time (the end never into the past,
  so every purchase already counted stays inside the window);
- everything else that decides who qualifies or what is paid only before the
  start; after it, `challenge_started` (409);
- a withdrawn challenge takes no new enrolments and pays no new rewards;
  rewards already paid stand. Withdrawing is final and repeating it is a no-op.

Plain Python and SQL; no web framework. Every problem has a stable code.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec

from api.cursors import decode_cursor, encode_cursor, whole_number
from api.errors import Conflict, DomainError, NotFound

KINDS = ("spend", "purchases", "distinct_partners", "weekly_streak", "nth_purchase", "anniversary")
ENROLMENTS = ("opt_in", "automatic", "personal")
AUDIENCES = ("everyone", "tier", "vip", "lapsed")
STATUSES = ("active", "withdrawn")
NAME_LENGTH_MAX = 120
DESCRIPTION_LENGTH_MAX = 2_000
TARGET_MAX = 100_000_000
REWARD_POINTS_MAX = 1_000_000
PARTNERS_MAX = 50
PERSONAL_DAYS_MAX = 366
LAPSED_DAYS_MAX = 3_650
WINDOW_DAYS_MAX = 3 * 366
PAGE_SIZE_MAX = 100
CREATE_KEY_LENGTH_MAX = 255
# Changing any of these changes who qualifies or what is paid: only before the start.
FIXED_AT_START = (
    "kind",
    "target",
    "partner_ids",
    "starts_at",
    "enrolment",
    "personal_days",
    "audience",
    "audience_tier",
    "lapsed_days",
    "reward_points",
    "sponsor_id",
)
ALWAYS_CHANGEABLE = ("name", "description", "ends_at")


class NewChallenge(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A challenge as an admin defines it (the body of POST /admin/v1/challenges)."""

    name: Annotated[str, msgspec.Meta(description=f"1 to {NAME_LENGTH_MAX} characters")]
    description: Annotated[
        str, msgspec.Meta(description=f"Shown to members; at most {DESCRIPTION_LENGTH_MAX}")
    ] = ""
    kind: Annotated[str, msgspec.Meta(description=" | ".join(KINDS))]
    target: Annotated[
        int,
        msgspec.Meta(
            description="spend: cents; purchases: count; distinct_partners: partners (>= 2);"
            " weekly_streak: weeks in a row; nth_purchase: N; anniversary: 1"
        ),
    ]
    partner_ids: Annotated[
        list[int], msgspec.Meta(description="Only purchases at these partners count; [] = any")
    ] = msgspec.field(default_factory=list)
    starts_at: Annotated[datetime, msgspec.Meta(description="With a time zone")]
    ends_at: Annotated[
        datetime, msgspec.Meta(description="After starts_at, not in the past (exclusive)")
    ]
    enrolment: Annotated[
        str,
        msgspec.Meta(description="opt_in | automatic | personal (win-back: audience lapsed)"),
    ]
    personal_days: Annotated[
        int | None, msgspec.Meta(description="personal only: days a member has from the offer")
    ] = None
    audience: Annotated[str, msgspec.Meta(description=" | ".join(AUDIENCES))] = "everyone"
    audience_tier: Annotated[
        str | None, msgspec.Meta(description="A tier code; only with audience tier")
    ] = None
    lapsed_days: Annotated[
        int | None, msgspec.Meta(description="lapsed only: days without a purchase")
    ] = None
    reward_points: Annotated[int, msgspec.Meta(description=f"1 to {REWARD_POINTS_MAX}")]
    sponsor_id: Annotated[
        int | None,
        msgspec.Meta(description="null: the programme's promo budget pays; else this partner"),
    ] = None


class ChallengeChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What an admin changes (PATCH): only the fields given. Name, description
    and ends_at change at any time; the rest only before the start."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    ends_at: datetime | msgspec.UnsetType = msgspec.UNSET
    kind: str | msgspec.UnsetType = msgspec.UNSET
    target: int | msgspec.UnsetType = msgspec.UNSET
    partner_ids: list[int] | msgspec.UnsetType = msgspec.UNSET
    starts_at: datetime | msgspec.UnsetType = msgspec.UNSET
    enrolment: str | msgspec.UnsetType = msgspec.UNSET
    personal_days: int | msgspec.UnsetType | None = msgspec.UNSET
    audience: str | msgspec.UnsetType = msgspec.UNSET
    audience_tier: str | msgspec.UnsetType | None = msgspec.UNSET
    lapsed_days: int | msgspec.UnsetType | None = msgspec.UNSET
    reward_points: int | msgspec.UnsetType = msgspec.UNSET
    sponsor_id: int | msgspec.UnsetType | None = msgspec.UNSET


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    description: str
    kind: str
    target: int
    partner_ids: list[int]
    starts_at: datetime
    ends_at: datetime
    enrolment: str
    personal_days: int | None
    audience: str
    audience_tier: str | None
    lapsed_days: int | None
    reward_points: int
    sponsor_id: int | None
    status: str
    created_at: datetime
    updated_at: datetime

    def phase(self, now: datetime) -> str:
        """withdrawn, scheduled (before the start), open, or ended."""
        if self.status == "withdrawn":
            return "withdrawn"
        if now < self.starts_at:
            return "scheduled"
        return "open" if now < self.ends_at else "ended"

    def definition(self) -> NewChallenge:
        return NewChallenge(**{f: getattr(self, f) for f in NewChallenge.__struct_fields__})


class Created(msgspec.Struct, frozen=True, kw_only=True):
    challenge: Challenge
    replayed: bool  # the key had made this challenge before; nothing was written


class Withdrawn(msgspec.Struct, frozen=True, kw_only=True):
    before: Challenge
    after: Challenge
    replayed: bool  # it was withdrawn already; nothing was written


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    enrolled: int
    met: int
    rewarded: int


class ChallengePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Challenge]
    next_cursor: str | None


# Validation ------------------------------------------------------------------


def _invalid(field: str, problem: str) -> DomainError:
    return DomainError(f"{field}: {problem}", code="challenge_invalid")


def _window_invalid(problem: str) -> DomainError:
    return DomainError(problem, code="challenge_window_invalid")


def normalised(new: NewChallenge) -> NewChallenge:
    """Names and descriptions without surrounding blanks, partners in order."""
    return msgspec.structs.replace(
        new,
        name=new.name.strip(),
        description=new.description.strip(),
        partner_ids=sorted(new.partner_ids),
    )


def validate(new: NewChallenge, now: datetime, *, end_must_be_future: bool = True) -> None:
    """Every rule that needs no database, in field order: the first broken one
    is the problem (`challenge_invalid` naming the field, or
    `challenge_window_invalid`)."""
    if not 1 <= len(new.name.strip()) <= NAME_LENGTH_MAX:
        raise _invalid("name", f"must be 1 to {NAME_LENGTH_MAX} characters")
    if len(new.description.strip()) > DESCRIPTION_LENGTH_MAX:
        raise _invalid("description", f"must be at most {DESCRIPTION_LENGTH_MAX} characters")
    if new.kind not in KINDS:
        raise _invalid("kind", f"must be one of {', '.join(KINDS)}")
    _validate_window(new, now, end_must_be_future=end_must_be_future)
    _validate_partners(new)
    _validate_target(new)
    _validate_enrolment_and_audience(new)
    if not 1 <= new.reward_points <= REWARD_POINTS_MAX:
        raise _invalid("reward_points", f"must be 1 to {REWARD_POINTS_MAX}")
    if new.sponsor_id is not None and new.sponsor_id < 1:
        raise DomainError(f"there is no partner {new.sponsor_id}", code="sponsor_unknown")


def _validate_window(new: NewChallenge, now: datetime, *, end_must_be_future: bool) -> None:
    for name, moment in (("starts_at", new.starts_at), ("ends_at", new.ends_at)):
        if moment.tzinfo is None:
            raise _window_invalid(
                f"{name} needs a time zone (for example 2026-05-01T00:00:00+02:00)"
            )
    if new.ends_at <= new.starts_at:
        raise _window_invalid("ends_at must be after starts_at")
    if end_must_be_future and new.ends_at <= now:
        raise _window_invalid("ends_at must be in the future")
    if new.ends_at - new.starts_at > timedelta(days=WINDOW_DAYS_MAX):
        raise _window_invalid(f"a challenge lasts at most {WINDOW_DAYS_MAX} days")


def _validate_partners(new: NewChallenge) -> None:
    if len(new.partner_ids) > PARTNERS_MAX:
        raise _invalid("partner_ids", f"lists at most {PARTNERS_MAX} partners")
    if len(set(new.partner_ids)) != len(new.partner_ids):
        raise _invalid("partner_ids", "lists a partner twice")
    if new.partner_ids and new.kind == "nth_purchase":
        # The Nth purchase is counted over the whole coalition, ever.
        raise _invalid("partner_ids", "must be empty for nth_purchase (every purchase counts)")
    unknown = [p for p in new.partner_ids if p < 1]
    if unknown:
        raise DomainError(f"there is no partner {unknown[0]}", code="partner_unknown")


def _validate_target(new: NewChallenge) -> None:
    if not 1 <= new.target <= TARGET_MAX:
        raise _invalid("target", f"must be 1 to {TARGET_MAX}")
    if new.kind == "anniversary" and new.target != 1:
        raise _invalid("target", "must be 1 for anniversary (one purchase in the week)")
    if new.kind == "distinct_partners":
        if new.target < 2:
            raise _invalid("target", "must be at least 2 for distinct_partners")
        if new.partner_ids and new.target > len(new.partner_ids):
            raise _invalid(
                "target", f"cannot exceed the {len(new.partner_ids)} partners in partner_ids"
            )
    if new.kind == "weekly_streak":
        days = (new.ends_at - new.starts_at).days
        if new.personal_days is not None:
            days = min(days, new.personal_days)
        # N weeks in a row need at least N - 1 full weeks between the first and last purchase.
        if new.target > days // 7 + 1:
            raise _invalid("target", f"a streak of {new.target} weeks does not fit in the window")


def _validate_enrolment_and_audience(new: NewChallenge) -> None:
    if new.enrolment not in ENROLMENTS:
        raise _invalid("enrolment", f"must be one of {', '.join(ENROLMENTS)}")
    if new.audience not in AUDIENCES:
        raise _invalid("audience", f"must be one of {', '.join(AUDIENCES)}")
    if new.enrolment == "personal":
        if new.audience != "lapsed":
            raise _invalid("enrolment", "personal (win-back) needs audience 'lapsed'")
        if new.personal_days is None:
            raise _invalid("personal_days", "is required with enrolment 'personal'")
    if new.personal_days is not None:
        if new.enrolment != "personal":
            raise _invalid("personal_days", "is only for enrolment 'personal'")
        if not 1 <= new.personal_days <= PERSONAL_DAYS_MAX:
            raise _invalid("personal_days", f"must be 1 to {PERSONAL_DAYS_MAX}")
    if (new.audience == "tier") != (new.audience_tier is not None):
        if new.audience_tier is None:
            raise _invalid("audience_tier", "is required with audience 'tier'")
        raise _invalid("audience_tier", "is only for audience 'tier'")
    if (new.audience == "lapsed") != (new.lapsed_days is not None):
        if new.lapsed_days is None:
            raise _invalid("lapsed_days", "is required with audience 'lapsed'")
        raise _invalid("lapsed_days", "is only for audience 'lapsed'")
    if new.lapsed_days is not None and not 1 <= new.lapsed_days <= LAPSED_DAYS_MAX:
        raise _invalid("lapsed_days", f"must be 1 to {LAPSED_DAYS_MAX}")


async def _check_references(conn: asyncpg.Connection, new: NewChallenge) -> None:
    """The tier, partners and sponsor named exist (partners and sponsor active)."""
    row = await conn.fetchrow(
        "SELECT ($1::text IS NULL OR EXISTS (SELECT FROM tiers WHERE code = $1)) AS tier_ok,"
        " ARRAY(SELECT want FROM unnest($2::bigint[]) want WHERE NOT EXISTS ("
        "   SELECT FROM partners p WHERE p.id = want AND p.status = 'active')) AS unknown,"
        " ($3::bigint IS NULL OR EXISTS ("
        "   SELECT FROM partners WHERE id = $3 AND status = 'active')) AS sponsor_ok",
        new.audience_tier,
        new.partner_ids,
        new.sponsor_id,
    )
    if not row["tier_ok"]:
        raise DomainError(f"there is no tier {new.audience_tier!r}", code="audience_tier_unknown")
    if row["unknown"]:
        listed = ", ".join(str(p) for p in row["unknown"])
        raise DomainError(f"no active partner with id {listed}", code="partner_unknown")
    if not row["sponsor_ok"]:
        raise DomainError(f"no active partner with id {new.sponsor_id}", code="sponsor_unknown")


# Reading -----------------------------------------------------------------------

_COLUMNS = (
    "id, name, description, kind, target, partner_ids, starts_at, ends_at, enrolment,"
    " personal_days, audience, audience_tier, lapsed_days, reward_points, sponsor_id, status,"
    " created_at, updated_at"
)


def _challenge(row: asyncpg.Record) -> Challenge:
    return Challenge(**{**dict(row), "partner_ids": list(row["partner_ids"])})


async def get_challenge(db: asyncpg.Pool | asyncpg.Connection, challenge_id: int) -> Challenge:
    """The challenge, or `challenge_not_found` (404)."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM challenges WHERE id = $1", challenge_id)
    if row is None:
        raise NotFound(f"there is no challenge {challenge_id}", code="challenge_not_found")
    return _challenge(row)


async def challenge_counts(db: asyncpg.Pool | asyncpg.Connection, challenge_id: int) -> Counts:
    row = await db.fetchrow(
        "SELECT count(*) AS enrolled, count(*) FILTER (WHERE met) AS met,"
        " count(*) FILTER (WHERE rewarded) AS rewarded"
        " FROM challenge_enrolments WHERE challenge_id = $1",
        challenge_id,
    )
    return Counts(enrolled=row["enrolled"], met=row["met"], rewarded=row["rewarded"])


def _encode_cursor(challenge_id: int) -> str:
    return encode_cursor(challenge_id)


def _decode_cursor(cursor: str) -> int:
    (challenge_id,) = decode_cursor(cursor, whole_number)
    return int(challenge_id)


async def list_challenges(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    status: str | None = None,
    open_at: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    kind: str | None = None,
) -> ChallengePage:
    """Newest first; `status` active or withdrawn; `open_at`: only challenges
    whose window holds that instant; `kind` one of KINDS. Keyset-paginated on id."""
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise DomainError(f"limit must be 1 to {PAGE_SIZE_MAX}", code="invalid_limit", status=400)
    if status is not None and status not in STATUSES:
        raise DomainError(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_status", status=400
        )
    if kind is not None and kind not in KINDS:
        raise DomainError(
            f"kind must be one of {', '.join(KINDS)}", code="invalid_kind", status=400
        )
    if open_at is not None and open_at.tzinfo is None:
        raise DomainError(
            "open_at needs a time zone (2026-03-02T09:00:00Z)", code="invalid_range", status=400
        )
    before_id = _decode_cursor(cursor) if cursor is not None else None
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM challenges"
        " WHERE ($1::text IS NULL OR status = $1)"
        " AND ($2::timestamptz IS NULL OR (starts_at <= $2 AND $2 < ends_at))"
        " AND ($3::bigint IS NULL OR id < $3)"
        " AND ($5::text IS NULL OR kind = $5)"
        " ORDER BY id DESC LIMIT $4",
        status,
        open_at,
        before_id,
        limit + 1,
        kind,
    )
    items = [_challenge(r) for r in rows[:limit]]
    next_cursor = _encode_cursor(items[-1].id) if len(rows) > limit else None
    return ChallengePage(items=items, next_cursor=next_cursor)


# Writing -----------------------------------------------------------------------


async def create_challenge(
    conn: asyncpg.Connection, new: NewChallenge, now: datetime, create_key: str | None = None
) -> Challenge:
    """A new challenge (see `create_or_replay`)."""
    return (await create_or_replay(conn, new, now, create_key)).challenge


async def create_or_replay(
    conn: asyncpg.Connection, new: NewChallenge, now: datetime, create_key: str | None = None
) -> Created:
    """A new challenge. With `create_key` (the admin's Idempotency-Key) a
    repeat with the same definition returns the challenge the key made, and a
    different definition is `idempotency_conflict` (409). The stored challenge
    is the reference: a repeat after a PATCH changed it is a conflict too."""
    if create_key is not None and not 1 <= len(create_key) <= CREATE_KEY_LENGTH_MAX:
        raise DomainError(
            f"the key must be 1 to {CREATE_KEY_LENGTH_MAX} characters",
            code="idempotency_key_invalid",
            status=400,
        )
    if create_key is not None:
        made = await _made_by_key(conn, new, create_key)
        if made is not None:
            return Created(challenge=made, replayed=True)
    validate(new, now)
    new = normalised(new)
    await _check_references(conn, new)
    # ON CONFLICT: a racing request with the same key waits for the first to
    # commit, then finds its challenge.
    row = await conn.fetchrow(
        "INSERT INTO challenges (name, description, kind, target, partner_ids, starts_at,"
        " ends_at, enrolment, personal_days, audience, audience_tier, lapsed_days,"
        " reward_points, sponsor_id, created_at, updated_at, create_key)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16)"
        f" ON CONFLICT (create_key) DO NOTHING RETURNING {_COLUMNS}",
        new.name,
        new.description,
        new.kind,
        new.target,
        new.partner_ids,
        new.starts_at,
        new.ends_at,
        new.enrolment,
        new.personal_days,
        new.audience,
        new.audience_tier,
        new.lapsed_days,
        new.reward_points,
        new.sponsor_id,
        now,
        create_key,
    )
    if row is None:
        assert create_key is not None  # only a key can conflict
        made = await _made_by_key(conn, new, create_key)
        if made is None:
            raise RuntimeError("a challenge key conflicted but no challenge holds it")
        return Created(challenge=made, replayed=True)
    return Created(challenge=_challenge(row), replayed=False)


async def _made_by_key(
    conn: asyncpg.Connection, new: NewChallenge, create_key: str
) -> Challenge | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM challenges WHERE create_key = $1", create_key
    )
    if row is None:
        return None
    made = _challenge(row)
    if made.definition() != normalised(new):
        raise Conflict(
            "this Idempotency-Key made a challenge with a different definition",
            code="idempotency_conflict",
        )
    return made


def _changed_fields(current: Challenge, change: ChallengeChange) -> dict[str, Any]:
    given = {
        f: getattr(change, f)
        for f in ChallengeChange.__struct_fields__
        if getattr(change, f) is not msgspec.UNSET
    }
    if isinstance(given.get("name"), str):
        given["name"] = given["name"].strip()
    if isinstance(given.get("description"), str):
        given["description"] = given["description"].strip()
    if isinstance(given.get("partner_ids"), list):
        given["partner_ids"] = sorted(given["partner_ids"])
    return {f: v for f, v in given.items() if v != getattr(current, f)}


async def _locked(conn: asyncpg.Connection, challenge_id: int) -> Challenge:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM challenges WHERE id = $1 FOR UPDATE", challenge_id
    )
    if row is None:
        raise NotFound(f"there is no challenge {challenge_id}", code="challenge_not_found")
    return _challenge(row)


async def change_challenge(
    conn: asyncpg.Connection, challenge_id: int, change: ChallengeChange, now: datetime
) -> tuple[Challenge, Challenge]:
    """Apply `change`; (before, after). Fields given with their current value
    are no change. After the start only name, description and ends_at may
    change (else `challenge_started`); a withdrawn challenge not at all
    (`challenge_withdrawn`)."""
    before = await _locked(conn, challenge_id)
    changed = _changed_fields(before, change)
    if not changed:
        return before, before
    if before.status == "withdrawn":
        raise Conflict("this challenge is withdrawn", code="challenge_withdrawn")
    fixed = sorted(f for f in changed if f in FIXED_AT_START)
    if fixed and now >= before.starts_at:
        raise Conflict(
            f"the challenge has started: {', '.join(fixed)} can no longer change"
            f" (only {', '.join(ALWAYS_CHANGEABLE)})",
            code="challenge_started",
        )
    merged = msgspec.structs.replace(before.definition(), **changed)
    # An end already past may stay as it is while the name changes; a new end
    # may not be in the past.
    validate(merged, now, end_must_be_future="ends_at" in changed)
    merged = normalised(merged)
    await _check_references(conn, merged)
    row = await conn.fetchrow(
        "UPDATE challenges SET name = $2, description = $3, kind = $4, target = $5,"
        " partner_ids = $6, starts_at = $7, ends_at = $8, enrolment = $9, personal_days = $10,"
        " audience = $11, audience_tier = $12, lapsed_days = $13, reward_points = $14,"
        f" sponsor_id = $15, updated_at = $16 WHERE id = $1 RETURNING {_COLUMNS}",
        challenge_id,
        merged.name,
        merged.description,
        merged.kind,
        merged.target,
        merged.partner_ids,
        merged.starts_at,
        merged.ends_at,
        merged.enrolment,
        merged.personal_days,
        merged.audience,
        merged.audience_tier,
        merged.lapsed_days,
        merged.reward_points,
        merged.sponsor_id,
        now,
    )
    if "ends_at" in changed:
        # Enrolments count until the challenge ends, a personal offer until its
        # own end if that is earlier (as the win-back job sets it). The new end
        # is in the future, so no purchase already counted leaves the window.
        await conn.execute(
            "WITH target AS ("
            "   SELECT e.id, CASE WHEN c.enrolment = 'personal'"
            "     THEN least($2, e.counts_from + make_interval(days => c.personal_days))"
            "     ELSE $2 END AS counts_until"
            "   FROM challenge_enrolments e JOIN challenges c ON c.id = e.challenge_id"
            "   WHERE e.challenge_id = $1)"
            " UPDATE challenge_enrolments e SET counts_until = target.counts_until,"
            " updated_at = $3 FROM target"
            " WHERE e.id = target.id AND e.counts_until <> target.counts_until",
            challenge_id,
            merged.ends_at,
            now,
        )
    return before, _challenge(row)


async def withdraw_challenge(
    conn: asyncpg.Connection, challenge_id: int, now: datetime
) -> Withdrawn:
    """Withdraw: no new enrolments or rewards from now on; rewards already
    paid stand. Withdrawing again changes nothing (`replayed`)."""
    before = await _locked(conn, challenge_id)
    if before.status == "withdrawn":
        return Withdrawn(before=before, after=before, replayed=True)
    row = await conn.fetchrow(
        "UPDATE challenges SET status = 'withdrawn', updated_at = $2 WHERE id = $1"
        f" RETURNING {_COLUMNS}",
        challenge_id,
        now,
    )
    return Withdrawn(before=before, after=_challenge(row), replayed=False)
