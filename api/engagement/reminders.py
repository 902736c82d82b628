"""Expiry reminders: points that expire within EXPIRY_NOTICE_DAYS are
announced ahead of time, never after the fact.

For each member who wants reminders (`members.expiry_reminders`, an active
account) and each Amsterdam day on which some of their available points
expire within the window, one `expiry_reminder` inbox message with dedupe
key `expiry:<day>`, and, for a new message only, a mail in the outbox when
the member has an e-mail address. The dedupe key makes the job safe to run
again and to race: a day is announced once per member.

Members are taken in batches (keyset on member id), each batch one
statement plus its mails in one transaction. Plain SQL and Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from api.db.pool import transaction
from api.engagement import inbox
from api.mail.outbox import enqueue_many
from api.mail.smtp import OutgoingMail

EXPIRY_NOTICE_DAYS = 30
REMINDER_TIME_ZONE = "Europe/Amsterdam"
REMINDER_BATCH_MEMBERS_MAX = 1_000
DEDUPE_KEY_PREFIX = "expiry:"
MAIL_FOOTER = (
    "You get this mail because expiry reminders are on in your Kring profile;"
    " you can turn them off there."
)

_ANNOUNCE_BATCH = f"""
WITH batch AS (
    SELECT DISTINCT l.member_id FROM lots l
    WHERE l.state = 'available' AND l.points_remaining > 0
      AND l.expires_at > $1 AND l.expires_at <= $2 AND l.member_id > $3
    ORDER BY l.member_id
    LIMIT $4
),
due AS (
    SELECT l.member_id,
           (l.expires_at AT TIME ZONE '{REMINDER_TIME_ZONE}')::date AS expires_on,
           sum(l.points_remaining)::bigint AS points
    FROM batch b
    JOIN members m ON m.id = b.member_id AND m.status = 'active' AND m.expiry_reminders
    JOIN lots l ON l.member_id = b.member_id
    WHERE l.state = 'available' AND l.points_remaining > 0
      AND l.expires_at > $1 AND l.expires_at <= $2
    GROUP BY 1, 2
),
posted AS (
    INSERT INTO inbox_messages (member_id, kind, params, created_at, dedupe_key)
    SELECT member_id, 'expiry_reminder',
           jsonb_build_object('points', points, 'expires_on', expires_on::text),
           $5, '{DEDUPE_KEY_PREFIX}' || expires_on::text
    FROM due
    ON CONFLICT (member_id, dedupe_key) DO NOTHING
    RETURNING member_id, (params->>'points')::bigint AS points, params->>'expires_on' AS expires_on
)
SELECT last.member_id AS last_member_id, p.member_id, p.points, p.expires_on, m.email,
       coalesce(m.salutation, m.display_name) AS address
FROM (SELECT max(member_id) AS member_id FROM batch) last
LEFT JOIN posted p ON true
LEFT JOIN members m ON m.id = p.member_id
"""


def expiry_dedupe_key(expires_on: date) -> str:
    return f"{DEDUPE_KEY_PREFIX}{expires_on.isoformat()}"


def reminder_mail(email: str, points: int, expires_on: str, address: str | None) -> OutgoingMail:
    rendered = inbox.render(
        "expiry_reminder", {"points": points, "expires_on": expires_on}, address
    )
    return OutgoingMail(
        to_address=email,
        subject=f"Kring: {rendered.subject}",
        body_text=f"{rendered.body}\n\n{MAIL_FOOTER}\n",
    )


async def announce_expiring_points(pool: asyncpg.Pool, now: datetime) -> int:
    """Announce available points expiring in (now, now + EXPIRY_NOTICE_DAYS];
    how many messages were posted (0 for days announced before)."""
    until = now + timedelta(days=EXPIRY_NOTICE_DAYS)
    posted_total, after = 0, 0

    async def batch(conn: asyncpg.Connection) -> tuple[int | None, int]:
        rows = await conn.fetch(_ANNOUNCE_BATCH, now, until, after, REMINDER_BATCH_MEMBERS_MAX, now)
        posted = [r for r in rows if r["member_id"] is not None]
        await enqueue_many(
            conn,
            [
                reminder_mail(r["email"], r["points"], r["expires_on"], r["address"])
                for r in posted
                if r["email"]
            ],
            now=now,
        )
        return rows[0]["last_member_id"], len(posted)

    while True:
        last, posted = await transaction(pool, batch)
        if last is None:
            return posted_total
        posted_total += posted
        after = last


@dataclass
class OncePerDay:
    """Remembers the last Amsterdam day a daily job finished in this process,
    so that the periodic job (run every few seconds) does its scan once a day.
    Only a saving: the dedupe keys keep a second run, or another process's
    run, from announcing anything twice."""

    done_on: date | None = None

    def due(self, now: datetime) -> bool:
        return self.done_on != self._day(now)

    def finished(self, now: datetime) -> None:
        self.done_on = self._day(now)

    @staticmethod
    def _day(now: datetime) -> date:
        return now.astimezone(ZoneInfo(REMINDER_TIME_ZONE)).date()
