"""Referrals: a member's code and link, a new member claiming a code, and the
rewards both are paid after the new member's first qualifying purchase.

Rules (the numbers live in `referral_settings`, one row, changed by admins):

- A member's code is made when first asked for: CODE_LENGTH characters from
  CODE_ALPHABET (digits and capitals without 0/O and 1/I, which people
  misread), drawn with `secrets`. The link is `{base}/join/{code}`.
- A new member claims one code, once (`claim_referral`), within
  `join_within_days` of joining and before their first purchase. Refused:
  an unknown code, their own code, a code of someone with the same mailbox
  (lower-cased, "+tag" dropped), the code of the member they referred, a
  second referrer, and any claim while referrals are switched off. Claiming
  the same code again returns the referral it made.
- `process_referrals` (run by the engagement processor for members whose
  purchases changed) rewards a pending referral once the referee has a
  qualifying purchase: an `earn` of at least `min_purchase_cents`, not fully
  refunded, booked at or after the claim. Both are paid from the programme's
  promo budget (`api.ledger.rewards.pay_reward`); a blocked or closed member
  is paid nothing. A referrer is paid for at most `rewards_per_month_max`
  referrals qualifying in one Europe/Amsterdam calendar month; a referral
  qualifying beyond that is `capped` (nobody is paid, for good). A rewarded referral whose referee has no qualifying
  purchase left (refunded) is reversed, both rewards taken back, and stays
  `reversed`: a referral is rewarded at most once.

Plain Python and SQL; no web framework.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from api.cursors import decode_cursor, encode_cursor, whole_number
from api.db.pool import transaction
from api.engagement import inbox
from api.errors import Conflict, DomainError, NotFound
from api.ledger.accounts import lock_members
from api.ledger.rewards import pay_reward, reverse_reward

# No 0/O and 1/I: a code read aloud or off a screen is typed right.
# Every referral reward and reversal in one processor transaction comes from
# (and goes back to) this one promo-budget shard: the transaction then holds
# a single non-member account row, taken after the members' accounts, as an
# earn takes its rows, so it cannot deadlock with one.
REWARD_SHARD = 0
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_ATTEMPTS_MAX = 10
# What a member may type: spaces and dashes are dropped, letters upper-cased.
CODE_INPUT_CHARS_MAX = 50
JOIN_PATH = "/join"
MONTH_TIME_ZONE = ZoneInfo("Europe/Amsterdam")
STATUSES = ("pending", "rewarded", "reversed", "capped")
PAGE_SIZE_MAX = 100
REFERRER_MEMO = "Referral: you invited a friend"
REFEREE_MEMO = "Referral: welcome bonus"

# The bounds of each setting (the table's CHECKs say the same).
POINTS_MAX = 1_000_000
MIN_PURCHASE_CENTS_MAX = 100_000_000
REWARDS_PER_MONTH_MAX = 1_000
JOIN_WITHIN_DAYS_MAX = 365


@dataclass(frozen=True, slots=True)
class ReferralSettings:
    enabled: bool
    referrer_points: int
    referee_points: int
    min_purchase_cents: int
    # Referrals a referrer is rewarded for per calendar month (Amsterdam);
    # 0 pauses referral rewards: referrals that qualify meanwhile are capped.
    rewards_per_month_max: int
    join_within_days: int


@dataclass(frozen=True, slots=True)
class Referral:
    id: int
    referrer_id: int
    referee_id: int
    created_at: datetime
    status: str
    qualified_at: datetime | None
    referrer_reward_id: UUID | None
    referee_reward_id: UUID | None
    referrer_reversal_id: UUID | None
    referee_reversal_id: UUID | None
    replayed: bool = False  # True: claimed before, this is that referral


_REFERRAL_COLUMNS = (
    "id, referrer_id, referee_id, created_at, status, qualified_at, referrer_reward_id,"
    " referee_reward_id, referrer_reversal_id, referee_reversal_id"
)


def _referral(row: asyncpg.Record, *, replayed: bool = False) -> Referral:
    return Referral(**{k: row[k] for k in _REFERRAL_COLUMNS.split(", ")}, replayed=replayed)


# Codes and links ------------------------------------------------------------


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(raw: str) -> str | None:
    """What a member typed, as a code is stored; None if it cannot be one."""
    code = raw[:CODE_INPUT_CHARS_MAX].strip().upper().replace(" ", "").replace("-", "")
    if len(code) != CODE_LENGTH or not all("0" <= c <= "9" or "A" <= c <= "Z" for c in code):
        return None
    return code


def referral_link(base_url: str, code: str) -> str:
    """`https://kring.example/join/ABCD2345` (`base_url` without a trailing slash)."""
    return f"{base_url.rstrip('/')}{JOIN_PATH}/{code}"


async def referral_code(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> str:
    """The member's code, made on the first ask. Two first asks at once make
    one code (the member's row is the key); a clash with another member's
    code draws again."""
    found: str | None = await db.fetchval(
        "SELECT code FROM referral_codes WHERE member_id = $1", member_id
    )
    if found is not None:
        return found
    for _ in range(CODE_ATTEMPTS_MAX):
        made: str | None = await db.fetchval(
            "INSERT INTO referral_codes (member_id, code, created_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING code",
            member_id,
            new_code(),
            now,
        )
        if made is not None:
            return made
        found = await db.fetchval("SELECT code FROM referral_codes WHERE member_id = $1", member_id)
        if found is not None:
            return found
    # 32^8 codes: ten clashes in a row means something else is wrong.
    raise RuntimeError("could not draw a free referral code")


def mailbox(email: str | None) -> str | None:
    """The mailbox an address delivers to, as far as is cheap to tell:
    lower-cased, with a "+tag" dropped from the local part."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def first_name(display_name: str | None) -> str | None:
    """The first word of the member's name, or None: what a join page shows."""
    words = (display_name or "").split()
    return words[0] if words else None


# Settings ---------------------------------------------------------------------


_SETTINGS_COLUMNS = (
    "enabled, referrer_points, referee_points, min_purchase_cents, rewards_per_month_max,"
    " join_within_days"
)


async def get_settings(db: asyncpg.Pool | asyncpg.Connection) -> ReferralSettings:
    row = await db.fetchrow(f"SELECT {_SETTINGS_COLUMNS} FROM referral_settings")
    if row is None:
        raise LookupError("referral_settings has no row: migration 0010 inserts it")
    return ReferralSettings(**dict(row))


def validate_settings(new: ReferralSettings) -> None:
    bounds = {
        "referrer_points": (0, POINTS_MAX),
        "referee_points": (0, POINTS_MAX),
        "min_purchase_cents": (1, MIN_PURCHASE_CENTS_MAX),
        "rewards_per_month_max": (0, REWARDS_PER_MONTH_MAX),
        "join_within_days": (1, JOIN_WITHIN_DAYS_MAX),
    }
    for name, (low, high) in bounds.items():
        value = getattr(new, name)
        if not low <= value <= high:
            raise DomainError(
                f"{name} must be {low} to {high}, got {value}", code="invalid_referral_settings"
            )


async def update_settings(
    conn: asyncpg.Connection, new: ReferralSettings, now: datetime
) -> tuple[ReferralSettings, ReferralSettings]:
    """Change the terms in the caller's transaction (with its audit row);
    (before, after). Points and the minimum apply to referrals qualifying
    from now on; rewards paid stay as they were."""
    validate_settings(new)
    row = await conn.fetchrow(f"SELECT {_SETTINGS_COLUMNS} FROM referral_settings FOR UPDATE")
    if row is None:
        raise LookupError("referral_settings has no row: migration 0010 inserts it")
    before = ReferralSettings(**dict(row))
    await conn.execute(
        "UPDATE referral_settings SET enabled = $1, referrer_points = $2, referee_points = $3,"
        " min_purchase_cents = $4, rewards_per_month_max = $5, join_within_days = $6,"
        " updated_at = $7",
        new.enabled,
        new.referrer_points,
        new.referee_points,
        new.min_purchase_cents,
        new.rewards_per_month_max,
        new.join_within_days,
        now,
    )
    return before, new


def settings_dict(value: ReferralSettings) -> dict[str, object]:
    return asdict(value)


# Claiming a code ----------------------------------------------------------------


def _unknown() -> NotFound:
    return NotFound("there is no member with that referral code", code="referral_code_unknown")


def _self() -> DomainError:
    return DomainError("you cannot use your own referral code", code="self_referral")


def _already() -> Conflict:
    return Conflict("you have already used a friend's referral code", code="already_referred")


async def claim_referral(pool: asyncpg.Pool, referee_id: int, code: str, now: datetime) -> Referral:
    """The new member `referee_id` enters `code` (typed, or from a join link).

    Problems (all leave nothing written): `referral_code_unknown` (404, also for
    a code that cannot be one or whose owner left), `already_referred` (409:
    another code was claimed before), `self_referral` (422: their own code, a
    code of the same mailbox, or of a member they referred),
    `referral_too_late` (422: joined more than `join_within_days` ago, or a
    purchase is booked already), `referrals_disabled` (422). Claiming the
    same code again returns the first referral (`replayed`).

    The claim and a first purchase may race: a purchase booked before the
    claim never qualifies (processing counts purchases from the claim on).
    """
    normalized = normalize_code(code)
    if normalized is None:
        raise _unknown()

    async def work(conn: asyncpg.Connection) -> Referral:
        row = await conn.fetchrow(
            "SELECT rc.member_id AS referrer_id, referrer.email AS referrer_email,"
            "       referee.email AS referee_email, referee.created_at AS referee_joined_at,"
            "       (SELECT r.id FROM referrals r WHERE r.referrer_id = $2"
            "          AND r.referee_id = rc.member_id) AS reverse_referral_id"
            " FROM referral_codes rc"
            " JOIN members referrer ON referrer.id = rc.member_id AND referrer.status = 'active'"
            " JOIN members referee ON referee.id = $2"
            " WHERE rc.code = $1",
            normalized,
            referee_id,
        )
        if row is None:
            raise _unknown()
        existing = await conn.fetchrow(
            f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referee_id = $1", referee_id
        )
        if existing is not None:
            if existing["referrer_id"] == row["referrer_id"]:
                return _referral(existing, replayed=True)
            raise _already()
        settings = await get_settings(conn)
        if not settings.enabled:
            raise DomainError(
                "referrals are switched off just now", code="referrals_disabled", status=422
            )
        referrer_id: int = row["referrer_id"]
        if referrer_id == referee_id:
            raise _self()
        referee_mailbox = mailbox(row["referee_email"])
        if referee_mailbox is not None and referee_mailbox == mailbox(row["referrer_email"]):
            raise _self()
        if row["reverse_referral_id"] is not None:
            # Two members referring each other is one person's second account
            # or a swap; either way not a new member brought in.
            raise _self()
        if row["referee_joined_at"] < now - timedelta(days=settings.join_within_days):
            raise DomainError(
                f"a friend's code can be entered within {settings.join_within_days} days of"
                " joining",
                code="referral_too_late",
            )
        if await conn.fetchval(
            "SELECT 1 FROM transactions WHERE member_id = $1 AND kind = 'earn' LIMIT 1",
            referee_id,
        ):
            raise DomainError(
                "a friend's code can be entered only before your first purchase",
                code="referral_too_late",
            )
        made = await conn.fetchrow(
            "INSERT INTO referrals (referrer_id, referee_id, created_at) VALUES ($1, $2, $3)"
            f" ON CONFLICT (referee_id) DO NOTHING RETURNING {_REFERRAL_COLUMNS}",
            referrer_id,
            referee_id,
            now,
        )
        if made is not None:
            return _referral(made)
        # A claim of the same member committed meanwhile: answer as if it came first.
        raced = await conn.fetchrow(
            f"SELECT {_REFERRAL_COLUMNS} FROM referrals WHERE referee_id = $1", referee_id
        )
        if raced is not None and raced["referrer_id"] == referrer_id:
            return _referral(raced, replayed=True)
        raise _already()

    return await transaction(pool, work)


# Processing ---------------------------------------------------------------------


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The Europe/Amsterdam calendar month `now` falls in, as instants [start, end)."""
    local = now.astimezone(MONTH_TIME_ZONE).date()
    first = local.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return (
        datetime.combine(first, time(0), tzinfo=MONTH_TIME_ZONE),
        datetime.combine(following, time(0), tzinfo=MONTH_TIME_ZONE),
    )


# Whether the referral's referee has a qualifying purchase: an earn of at
# least the minimum, not fully refunded, booked at or after the claim. A
# referral that qualified keeps the minimum it qualified under, so raising
# the minimum later never reverses a reward.
_QUALIFIES = """
EXISTS (SELECT 1 FROM transactions t
        WHERE t.member_id = r.referee_id AND t.kind = 'earn'
          AND t.created_at >= r.created_at
          AND t.amount_cents >= coalesce(r.qualified_min_purchase_cents, $2)
          AND t.amount_refunded_cents < t.amount_cents)
"""

# Referrals rewarded for a referrer in a month: reversed ones count too, so
# that refunding and re-referring does not get round the cap.
_REWARDED_IN_MONTH = """
SELECT count(*) FROM referrals
WHERE referrer_id = $1 AND status IN ('rewarded', 'reversed')
  AND qualified_at >= $2 AND qualified_at < $3
"""


@dataclass(slots=True)
class _Payment:
    member_id: int
    points: int
    memo: str
    role: str  # "referrer" or "referee"
    reward_id: UUID | None = None


async def process_referrals(
    conn: asyncpg.Connection, member_ids: Sequence[int], now: datetime
) -> None:
    """Reward and reverse the referrals of these referees, in the caller's
    (the engagement processor's) transaction, which must be READ COMMITTED
    (PostgreSQL's default): the monthly count is read after the locks.

    Concurrency, in the ledger's lock order: first the accounts of both
    members of every open referral of these referees (`lock_members`, in
    global id order; the processor holds them already), which is also the
    per-referrer lock that keeps two referees of one referrer, processed at
    once, within the monthly cap: the count is read under it. Then the
    referral rows (FOR UPDATE), so two processors never pay one referral
    twice: the second sees it rewarded. A cap of 0 pauses referral rewards:
    every referral qualifying meanwhile is capped. Points, minimum and cap
    are the settings current when processing runs.
    """
    if not member_ids:
        return
    ids = list(member_ids)
    people = await conn.fetch(
        "SELECT referrer_id, referee_id FROM referrals"
        " WHERE referee_id = ANY($1::bigint[]) AND status IN ('pending', 'rewarded')",
        ids,
    )
    if not people:
        return
    locked = {p["referrer_id"] for p in people} | {p["referee_id"] for p in people}
    await lock_members(conn, sorted(locked))
    rows = await conn.fetch(
        "SELECT r.id FROM referrals r"
        " WHERE r.referee_id = ANY($1::bigint[]) AND r.status IN ('pending', 'rewarded')"
        " ORDER BY r.id FOR UPDATE",
        ids,
    )
    if not rows:
        return
    settings = await get_settings(conn)
    # Read after the lock, in a statement of its own: it sees every purchase
    # and refund committed before the lock was granted.
    referrals = await conn.fetch(
        f"SELECT {_REFERRAL_COLUMNS}, {_QUALIFIES} AS qualifies,"
        " (SELECT status FROM members WHERE id = r.referrer_id) AS referrer_status,"
        " (SELECT status FROM members WHERE id = r.referee_id) AS referee_status"
        " FROM referrals r WHERE r.id = ANY($1::bigint[]) ORDER BY r.id",
        [r["id"] for r in rows],
        settings.min_purchase_cents,
    )
    to_reward = [r for r in referrals if r["status"] == "pending" and r["qualifies"]]
    to_reverse = [r for r in referrals if r["status"] == "rewarded" and not r["qualifies"]]
    if not to_reward and not to_reverse:
        return
    touched = {r["referrer_id"] for r in to_reward + to_reverse}
    touched |= {r["referee_id"] for r in to_reward + to_reverse}
    if touched - locked:
        # A referral claimed between the two reads: lock its members too.
        await lock_members(conn, sorted(touched))
    for row in to_reverse:
        await _reverse(conn, row, now)
    month_start, month_end = month_bounds(now)
    for row in to_reward:
        rewarded = await conn.fetchval(
            _REWARDED_IN_MONTH, row["referrer_id"], month_start, month_end
        )
        if rewarded >= settings.rewards_per_month_max:
            await conn.execute(
                "UPDATE referrals SET status = 'capped', qualified_at = $2,"
                " qualified_min_purchase_cents = $3 WHERE id = $1",
                row["id"],
                now,
                settings.min_purchase_cents,
            )
            continue
        await _reward(conn, row, settings, now)


async def _reward(
    conn: asyncpg.Connection, row: asyncpg.Record, settings: ReferralSettings, now: datetime
) -> None:
    # A blocked or closed member is paid nothing; the other side still is.
    referrer_points = settings.referrer_points if row["referrer_status"] == "active" else 0
    referee_points = settings.referee_points if row["referee_status"] == "active" else 0
    payments = [
        _Payment(row["referrer_id"], referrer_points, REFERRER_MEMO, "referrer"),
        _Payment(row["referee_id"], referee_points, REFEREE_MEMO, "referee"),
    ]
    # The ledger's order: the lower member id first (both are locked already).
    for payment in sorted(payments, key=lambda p: p.member_id):
        if payment.points <= 0:
            continue
        payment.reward_id = await pay_reward(
            conn,
            member_id=payment.member_id,
            points=payment.points,
            sponsor_id=None,
            memo=payment.memo,
            now=now,
            shard=REWARD_SHARD,
        )
        await inbox.post(
            conn,
            payment.member_id,
            "referral_rewarded",
            {"points": payment.points, "role": payment.role},
            now,
        )
    referrer, referee = payments
    await conn.execute(
        "UPDATE referrals SET status = 'rewarded', qualified_at = $2,"
        " referrer_reward_id = $3, referee_reward_id = $4, qualified_min_purchase_cents = $5"
        " WHERE id = $1",
        row["id"],
        now,
        referrer.reward_id,
        referee.reward_id,
        settings.min_purchase_cents,
    )


async def _reverse(conn: asyncpg.Connection, row: asyncpg.Record, now: datetime) -> None:
    rewards = [
        (row["referrer_id"], row["referrer_reward_id"]),
        (row["referee_id"], row["referee_reward_id"]),
    ]
    reversal_ids: list[UUID | None] = [None, None]
    for index, (member_id, reward_id) in sorted(enumerate(rewards), key=lambda e: e[1][0]):
        if reward_id is None:
            continue
        reversal_ids[index] = await reverse_reward(conn, reward_id, now, shard=REWARD_SHARD)
        points = await conn.fetchval("SELECT points FROM transactions WHERE id = $1", reward_id)
        await inbox.post(conn, member_id, "referral_reversed", {"points": int(points)}, now)
    await conn.execute(
        "UPDATE referrals SET status = 'reversed', referrer_reversal_id = $2,"
        " referee_reversal_id = $3 WHERE id = $1",
        row["id"],
        reversal_ids[0],
        reversal_ids[1],
    )


# What a member sees ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralSummary:
    code: str
    link: str
    enabled: bool
    referrer_points: int
    referee_points: int
    min_purchase_cents: int
    rewards_per_month_max: int
    join_within_days: int
    friends_joined: int  # referrals claimed with this member's code, ever
    friends_rewarded: int  # of those, rewarded (and not reversed)
    rewarded_this_month: int  # counted against the monthly cap (reversed ones too)
    referred_by: str | None  # the referrer's first name, "a friend", or None
    referral_status: str | None  # this member's own referral, when referred
    can_enter_code: bool
    enter_code_until: datetime | None  # while can_enter_code


_SUMMARY = """
SELECT m.created_at,
       EXISTS (SELECT 1 FROM transactions t WHERE t.member_id = m.id AND t.kind = 'earn')
           AS has_purchase,
       (SELECT count(*) FROM referrals r WHERE r.referrer_id = m.id) AS friends_joined,
       (SELECT count(*) FROM referrals r WHERE r.referrer_id = m.id AND r.status = 'rewarded')
           AS friends_rewarded,
       (SELECT count(*) FROM referrals r WHERE r.referrer_id = m.id
          AND r.status IN ('rewarded', 'reversed')
          AND r.qualified_at >= $2 AND r.qualified_at < $3) AS rewarded_this_month,
       own.status AS own_status, referrer.display_name AS referrer_name
FROM members m
LEFT JOIN referrals own ON own.referee_id = m.id
LEFT JOIN members referrer ON referrer.id = own.referrer_id
WHERE m.id = $1
"""


async def referral_summary(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime, *, base_url: str
) -> ReferralSummary:
    """The member's code and link, the terms, how their invitations went, and
    whether they may still enter a friend's code. `base_url` is the site's
    public address (scheme and host) for the link."""
    code = await referral_code(db, member_id, now)
    settings = await get_settings(db)
    month_start, month_end = month_bounds(now)
    row = await db.fetchrow(_SUMMARY, member_id, month_start, month_end)
    if row is None:
        raise NotFound("no such member", code="member_not_found")
    referred = row["own_status"] is not None
    until = row["created_at"] + timedelta(days=settings.join_within_days)
    can_enter = settings.enabled and not referred and not row["has_purchase"] and now <= until
    return ReferralSummary(
        code=code,
        link=referral_link(base_url, code),
        enabled=settings.enabled,
        referrer_points=settings.referrer_points,
        referee_points=settings.referee_points,
        min_purchase_cents=settings.min_purchase_cents,
        rewards_per_month_max=settings.rewards_per_month_max,
        join_within_days=settings.join_within_days,
        friends_joined=row["friends_joined"],
        friends_rewarded=row["friends_rewarded"],
        rewarded_this_month=row["rewarded_this_month"],
        referred_by=(first_name(row["referrer_name"]) or "a friend") if referred else None,
        referral_status=row["own_status"],
        can_enter_code=can_enter,
        enter_code_until=until if can_enter else None,
    )


@dataclass(frozen=True, slots=True)
class Invitation:
    """What the public join page shows for a code."""

    code: str
    inviter: str  # the referrer's first name, or "a friend"
    referee_points: int
    min_purchase_cents: int
    join_within_days: int
    enabled: bool


async def invitation(db: asyncpg.Pool | asyncpg.Connection, raw_code: str) -> Invitation | None:
    """The invitation behind a code, or None for a code nobody active holds."""
    code = normalize_code(raw_code)
    if code is None:
        return None
    row = await db.fetchrow(
        "SELECT m.display_name FROM referral_codes rc"
        " JOIN members m ON m.id = rc.member_id AND m.status = 'active' WHERE rc.code = $1",
        code,
    )
    if row is None:
        return None
    settings = await get_settings(db)
    return Invitation(
        code=code,
        inviter=first_name(row["display_name"]) or "a friend",
        referee_points=settings.referee_points,
        min_purchase_cents=settings.min_purchase_cents,
        join_within_days=settings.join_within_days,
        enabled=settings.enabled,
    )


# The admin listing ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralRow:
    id: int
    referrer_public_id: UUID
    referrer_card_number: str
    referee_public_id: UUID
    referee_card_number: str
    created_at: datetime
    status: str
    qualified_at: datetime | None
    referrer_reward_id: UUID | None
    referee_reward_id: UUID | None
    referrer_reversal_id: UUID | None
    referee_reversal_id: UUID | None


@dataclass(frozen=True, slots=True)
class ReferralPage:
    items: list[ReferralRow]
    next_cursor: str | None


def _encode_cursor(referral_id: int) -> str:
    return encode_cursor(referral_id)


def _decode_cursor(cursor: str) -> int:
    (referral_id,) = decode_cursor(cursor, whole_number)
    return int(referral_id)


def _referrer_filter(referrer: str | None) -> tuple[str | None, UUID | None]:
    """A card number (16 digits) or a member's public id; (card, public id)."""
    if referrer is None:
        return None, None
    if len(referrer) == 16 and referrer.isdigit():
        return referrer, None
    try:
        return None, UUID(referrer)
    except ValueError:
        raise DomainError(
            "referrer is a card number (16 digits) or a member's public id",
            code="invalid_referrer",
            status=400,
        ) from None


async def list_referrals(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    referrer: str | None = None,
) -> ReferralPage:
    """Newest first, keyset-paginated on the referral id; filters by status and referrer."""
    if not 1 <= limit <= PAGE_SIZE_MAX:
        raise DomainError(f"limit must be 1 to {PAGE_SIZE_MAX}", code="invalid_limit", status=400)
    if status is not None and status not in STATUSES:
        raise DomainError(
            f"status is one of {', '.join(STATUSES)}", code="invalid_status", status=400
        )
    card, public_id = _referrer_filter(referrer)
    before_id = _decode_cursor(cursor) if cursor is not None else None
    rows = await db.fetch(
        "SELECT r.id, a.public_id AS referrer_public_id, a.card_number AS referrer_card_number,"
        "       b.public_id AS referee_public_id, b.card_number AS referee_card_number,"
        "       r.created_at, r.status, r.qualified_at, r.referrer_reward_id,"
        "       r.referee_reward_id, r.referrer_reversal_id, r.referee_reversal_id"
        " FROM referrals r"
        " JOIN members a ON a.id = r.referrer_id JOIN members b ON b.id = r.referee_id"
        " WHERE ($1::text IS NULL OR r.status = $1)"
        "   AND ($2::text IS NULL OR a.card_number = $2)"
        "   AND ($3::uuid IS NULL OR a.public_id = $3)"
        "   AND ($4::bigint IS NULL OR r.id < $4)"
        " ORDER BY r.id DESC LIMIT $5",
        status,
        card,
        public_id,
        before_id,
        limit + 1,
    )
    items = [ReferralRow(**dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return ReferralPage(items=items, next_cursor=_encode_cursor(items[-1].id) if more else None)
