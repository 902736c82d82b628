"""The member's in-app inbox: challenge, referral, lottery, tier and expiry
messages.

A message is stored as its kind and parameters (`inbox_messages`, migration
0010) and rendered when read, so it addresses the member as their profile
says now: their salutation if they set one, else their display name, else a
neutral "Hello,". Writers post inside their own transaction (`post`,
`post_many`), so a message commits with what it announces; a `dedupe_key`
makes a job that announces something announce it once per member.

Plain Python and SQL, no web framework.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from api.errors import DomainError, NotFound

INBOX_PAGE_SIZE_MAX = 50
# The nav badge counts at most this many (shown as "99+"): the count stays
# a short index scan however many unread messages a member lets pile up.
UNREAD_COUNTED_MAX = 100
DEDUPE_KEY_LENGTH_MAX = 200
POST_MANY_BATCH_MAX = 5_000
_ID_MAX = 2**63 - 1

# Each kind and the parameters its writers give (others may be added).
KINDS: Mapping[str, frozenset[str]] = {
    "challenge_completed": frozenset({"challenge", "points"}),
    "challenge_reversed": frozenset({"challenge", "points"}),
    "challenge_offer": frozenset({"challenge", "points", "until", "description"}),
    "referral_rewarded": frozenset({"points", "role"}),
    "referral_reversed": frozenset({"points"}),
    "expiry_reminder": frozenset({"points", "expires_on"}),
    "lottery_won": frozenset({"lottery", "prize"}),
    "lottery_cancelled": frozenset({"lottery", "points_refunded"}),
    "tier_up": frozenset({"tier"}),
    "tier_down": frozenset({"tier"}),
    "donation_skipped": frozenset({"charity", "points", "month"}),
    "adjustment": frozenset({"points", "reason"}),
}


@dataclass(frozen=True, slots=True)
class NewMessage:
    member_id: int
    kind: str
    params: Mapping[str, object]
    dedupe_key: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    body: str  # plain text: the greeting, a blank line, the message


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    kind: str
    subject: str
    body: str
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None


# Writing ---------------------------------------------------------------------


def _checked(kind: str, params: Mapping[str, object], dedupe_key: str | None) -> str:
    """The params as JSON, after checking the kind and its parameters."""
    required = KINDS.get(kind)
    if required is None:
        raise ValueError(f"unknown inbox message kind {kind!r}")
    missing = required - params.keys()
    if missing:
        raise ValueError(f"an inbox {kind} message needs {', '.join(sorted(missing))}")
    if dedupe_key is not None and not 1 <= len(dedupe_key) <= DEDUPE_KEY_LENGTH_MAX:
        raise ValueError(f"a dedupe key has 1 to {DEDUPE_KEY_LENGTH_MAX} characters")
    return json.dumps(dict(params), ensure_ascii=False, default=str)


async def post(
    conn: asyncpg.Connection,
    member_id: int,
    kind: str,
    params: Mapping[str, object],
    now: datetime,
    dedupe_key: str | None = None,
) -> int | None:
    """One message, in the caller's transaction; its id, or None when the
    member already has a message with this dedupe key (nothing written).
    ValueError for an unknown kind or missing parameters (a caller's bug)."""
    document = _checked(kind, params, dedupe_key)
    message_id: int | None = await conn.fetchval(
        "INSERT INTO inbox_messages (member_id, kind, params, created_at, dedupe_key)"
        " VALUES ($1, $2, $3::jsonb, $4, $5)"
        " ON CONFLICT (member_id, dedupe_key) DO NOTHING RETURNING id",
        member_id,
        kind,
        document,
        now,
        dedupe_key,
    )
    return message_id


_POST_MANY = """
WITH inserted AS (
    INSERT INTO inbox_messages (member_id, kind, params, created_at, dedupe_key)
    SELECT m, k, p::jsonb, $5, d
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS x(m, k, p, d)
    ON CONFLICT (member_id, dedupe_key) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""


async def post_many(conn: asyncpg.Connection, messages: Sequence[NewMessage], now: datetime) -> int:
    """Many messages in one statement per POST_MANY_BATCH_MAX, in the caller's
    transaction; how many were inserted (dedupe-key repeats are skipped)."""
    documents = [_checked(m.kind, m.params, m.dedupe_key) for m in messages]
    inserted = 0
    for start in range(0, len(messages), POST_MANY_BATCH_MAX):
        batch = messages[start : start + POST_MANY_BATCH_MAX]
        inserted += await conn.fetchval(
            _POST_MANY,
            [m.member_id for m in batch],
            [m.kind for m in batch],
            documents[start : start + POST_MANY_BATCH_MAX],
            [m.dedupe_key for m in batch],
            now,
        )
    return inserted


# Rendering -------------------------------------------------------------------


def _points(value: object) -> str:
    """1234 -> "1.234" (as the wallet writes points)."""
    try:
        number = int(str(value))
    except ValueError:
        return str(value)
    sign = "-" if number < 0 else ""
    return sign + f"{abs(number):,}".replace(",", ".")


def _day(value: object) -> str:
    """An ISO date -> "2 Mar 2026" (as the wallet writes days)."""
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{day.day} {day:%b %Y}"


def _text(params: Mapping[str, object], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def _challenge_completed(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Challenge completed: {_text(p, 'challenge')}",
        f"You completed the challenge “{_text(p, 'challenge')}” and earned"
        f" {_points(p.get('points'))} points.",
    )


def _challenge_reversed(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Challenge reward taken back: {_text(p, 'challenge')}",
        f"A refund means the challenge “{_text(p, 'challenge')}” is no longer met, so its"
        f" reward of {_points(p.get('points'))} points was taken back. Meet the challenge"
        " again and the reward is paid again.",
    )


def _challenge_offer(p: Mapping[str, object]) -> tuple[str, str]:
    description = _text(p, "description").strip()
    offer = (
        f"Complete the challenge “{_text(p, 'challenge')}” by {_day(p.get('until'))} and earn"
        f" {_points(p.get('points'))} bonus points."
    )
    return (
        f"A personal offer for you: {_text(p, 'challenge')}",
        f"{description}\n\n{offer}" if description else offer,
    )


def _referral_rewarded(p: Mapping[str, object]) -> tuple[str, str]:
    points = _points(p.get("points"))
    if p.get("role") == "referee":
        return (
            f"Welcome bonus: {points} points",
            f"You joined Kring through a friend and made your first purchase: you earned"
            f" {points} points.",
        )
    return (
        f"Referral reward: {points} points",
        f"A friend you referred made their first purchase: you earned {points} points.",
    )


def _referral_reversed(p: Mapping[str, object]) -> tuple[str, str]:
    points = _points(p.get("points"))
    return (
        f"Referral reward taken back: {points} points",
        f"The purchase that earned a referral reward was refunded, so its {points} points"
        " were taken back.",
    )


def _expiry_reminder(p: Mapping[str, object]) -> tuple[str, str]:
    points, day = _points(p.get("points")), _day(p.get("expires_on"))
    return (
        f"{points} points expire on {day}",
        f"{points} of your points expire on {day}. Spend them at any Kring partner before"
        " then and they are not lost.",
    )


def _lottery_won(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"You won in {_text(p, 'lottery')}!",
        f"Your ticket won {_text(p, 'prize')} in the lottery “{_text(p, 'lottery')}”."
        " Congratulations!",
    )


def _lottery_cancelled(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Lottery cancelled: {_text(p, 'lottery')}",
        f"The lottery “{_text(p, 'lottery')}” was cancelled. The"
        f" {_points(p.get('points_refunded'))} points you paid for tickets are back in"
        " your account.",
    )


def _tier_up(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Welcome to {_text(p, 'tier')}",
        f"You reached the {_text(p, 'tier')} tier. From your next purchase you earn more points.",
    )


def _tier_down(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Your tier is now {_text(p, 'tier')}",
        f"At this month's review your tier became {_text(p, 'tier')}, from your qualifying"
        " points over the last 12 months. Earn more to move up again.",
    )


def _adjustment(p: Mapping[str, object]) -> tuple[str, str]:
    points = p.get("points")
    signed = points if isinstance(points, int) else 0
    reason = _text(p, "reason").rstrip()
    reason += "" if reason.endswith((".", "!", "?")) else "."
    if signed >= 0:
        return (
            f"We added {_points(signed)} points to your balance",
            f"Kring's member service added {_points(signed)} points to your available"
            f" balance. The reason: {reason}",
        )
    return (
        f"We took {_points(-signed)} points from your balance",
        f"Kring's member service corrected your available balance by {_points(-signed)}"
        f" points. The reason: {reason}",
    )


def _donation_skipped(p: Mapping[str, object]) -> tuple[str, str]:
    return (
        f"Your monthly gift to {_text(p, 'charity')} was skipped",
        f"You did not have {_points(p['points'])} points available for your monthly gift to"
        f" {_text(p, 'charity')} this month ({_text(p, 'month')}), so nothing was given."
        " Your order stays on for next month.",
    )


_TEMPLATES: Mapping[str, Callable[[Mapping[str, object]], tuple[str, str]]] = {
    "challenge_completed": _challenge_completed,
    "challenge_reversed": _challenge_reversed,
    "challenge_offer": _challenge_offer,
    "referral_rewarded": _referral_rewarded,
    "referral_reversed": _referral_reversed,
    "expiry_reminder": _expiry_reminder,
    "lottery_won": _lottery_won,
    "lottery_cancelled": _lottery_cancelled,
    "tier_up": _tier_up,
    "tier_down": _tier_down,
    "donation_skipped": _donation_skipped,
    "adjustment": _adjustment,
}


def greeting(address: str | None) -> str:
    address = (address or "").strip()
    return f"Hello {address}," if address else "Hello,"


def render(kind: str, params: Mapping[str, object], address: str | None) -> Rendered:
    """The message as the member reads it, addressed as `address` (their
    salutation, else display name; None: a neutral greeting)."""
    template = _TEMPLATES.get(kind)
    if template is None:  # a kind this code does not know (a newer writer): still readable
        subject, text = "A message from Kring", "There is news in your Kring account."
    else:
        subject, text = template(params)
    return Rendered(subject=subject, body=f"{greeting(address)}\n\n{text}")


# Reading ---------------------------------------------------------------------


def _view(row: asyncpg.Record) -> MessageView:
    params: dict[str, Any] = json.loads(row["params"])
    rendered = render(row["kind"], params, row["address"])
    return MessageView(
        id=row["id"],
        kind=row["kind"],
        subject=rendered.subject,
        body=rendered.body,
        created_at=row["created_at"],
        read_at=row["read_at"],
    )


_MESSAGE_COLUMNS = """
    i.id, i.kind, i.params::text AS params, i.created_at, i.read_at,
    coalesce(m.salutation, m.display_name) AS address
"""


async def list_messages(
    db: asyncpg.Pool | asyncpg.Connection,
    member_id: int,
    *,
    before_id: int | None,
    limit: int,
) -> list[MessageView]:
    """The member's messages, newest first, rendered: a page of `limit` (at
    most INBOX_PAGE_SIZE_MAX) older than `before_id` (the last id of the
    previous page). One query on the (member_id, id DESC) index."""
    if not 1 <= limit <= INBOX_PAGE_SIZE_MAX:
        raise DomainError(
            f"limit must be 1 to {INBOX_PAGE_SIZE_MAX}", code="invalid_limit", status=400
        )
    if before_id is not None and not 1 <= before_id <= _ID_MAX:
        raise DomainError("before must be a message id", code="invalid_cursor", status=400)
    rows = await db.fetch(
        f"SELECT {_MESSAGE_COLUMNS} FROM inbox_messages i JOIN members m ON m.id = i.member_id"
        " WHERE i.member_id = $1 AND i.id < $2 ORDER BY i.id DESC LIMIT $3",
        member_id,
        _ID_MAX if before_id is None else before_id,
        limit,
    )
    return [_view(r) for r in rows]


async def get_message(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, message_id: int
) -> MessageView:
    """One of the member's messages; another member's is `message_not_found`
    exactly like one that does not exist."""
    row = None
    if 1 <= message_id <= _ID_MAX:
        row = await db.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM inbox_messages i JOIN members m ON m.id = i.member_id"
            " WHERE i.id = $1 AND i.member_id = $2",
            message_id,
            member_id,
        )
    if row is None:
        raise NotFound("there is no such message in your inbox", code="message_not_found")
    return _view(row)


async def unread_count(db: asyncpg.Pool | asyncpg.Connection, member_id: int) -> int:
    """Unread messages, counted up to UNREAD_COUNTED_MAX on the partial
    `inbox_messages_unread` index (cheap enough for every wallet page)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM inbox_messages"
        " WHERE member_id = $1 AND read_at IS NULL LIMIT $2) u",
        member_id,
        UNREAD_COUNTED_MAX,
    )
    return count


async def mark_read(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, message_id: int, now: datetime
) -> bool:
    """Mark one of the member's messages read; True if it was unread, False
    if it was read already. Another member's message is `message_not_found`."""
    row = None
    if 1 <= message_id <= _ID_MAX:
        row = await db.fetchrow(
            "WITH marked AS ("
            "  UPDATE inbox_messages SET read_at = $3"
            "  WHERE id = $1 AND member_id = $2 AND read_at IS NULL RETURNING id)"
            " SELECT EXISTS (SELECT 1 FROM marked) AS marked,"
            "  EXISTS (SELECT 1 FROM inbox_messages WHERE id = $1 AND member_id = $2) AS mine",
            message_id,
            member_id,
            now,
        )
    if row is None or not row["mine"]:
        raise NotFound("there is no such message in your inbox", code="message_not_found")
    return bool(row["marked"])


async def mark_all_read(
    db: asyncpg.Pool | asyncpg.Connection, member_id: int, now: datetime
) -> int:
    """Mark every unread message of the member read; how many were unread."""
    status: str = await db.execute(
        "UPDATE inbox_messages SET read_at = $2 WHERE member_id = $1 AND read_at IS NULL",
        member_id,
        now,
    )
    return int(status.split()[-1])
