"""The mail outbox: written in the caller's transaction, sent after commit.

A sign-in code and its mail commit together, so there is never a code without
its mail (or the other way round); sending happens outside any transaction,
so a slow SMTP server holds no database connection or lock. A send that fails
is recorded on the row (attempts, last_error) and reported to the caller, who
tells the person asking: nothing is dropped silently. Once sent by SMTP, the
text (which holds a code) is blanked: the database keeps no readable codes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from api.mail.smtp import MailSender, OutgoingMail

log = logging.getLogger("kring.mail")

MAILBOX_MESSAGES_MAX = 50
LAST_ERROR_CHARS_MAX = 500
SENT_BODY_PLACEHOLDER = "(sent by SMTP; the text is not kept)"


class MailNotSent(Exception):
    """The mail server did not take the message; it stays in the outbox unsent."""


@dataclass(frozen=True, slots=True)
class StoredMail:
    id: int
    to_address: str
    subject: str
    body_text: str
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None


async def enqueue(conn: asyncpg.Connection, mail: OutgoingMail, *, now: datetime) -> int:
    mail_id: int = await conn.fetchval(
        "INSERT INTO mail_outbox (to_address, subject, body_text, created_at)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        mail.to_address,
        mail.subject,
        mail.body_text,
        now,
    )
    return mail_id


async def enqueue_many(
    conn: asyncpg.Connection, mails: Sequence[OutgoingMail], *, now: datetime
) -> int:
    """`enqueue` for many mails in one statement (a job's batch); how many."""
    if not mails:
        return 0
    await conn.execute(
        "INSERT INTO mail_outbox (to_address, subject, body_text, created_at)"
        " SELECT a, s, b, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS x(a, s, b)",
        [m.to_address for m in mails],
        [m.subject for m in mails],
        [m.body_text for m in mails],
        now,
    )
    return len(mails)


async def deliver(pool: asyncpg.Pool, mail_id: int, sender: MailSender, *, now: datetime) -> None:
    """Send one outbox message (after its transaction committed); MailNotSent if it failed."""
    row = await pool.fetchrow(
        "SELECT to_address, subject, body_text FROM mail_outbox WHERE id = $1 AND sent_at IS NULL",
        mail_id,
    )
    if row is None:
        return  # sent already
    mail = OutgoingMail(row["to_address"], row["subject"], row["body_text"])
    try:
        await sender.send(mail)
    except Exception as exc:  # any failure of the mail server or the network
        log.warning("mail %d to the outbox's address not sent: %s", mail_id, exc)
        await pool.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            mail_id,
            f"{type(exc).__name__}: {exc}"[:LAST_ERROR_CHARS_MAX],
        )
        raise MailNotSent(str(exc)) from exc
    await pool.execute(
        "UPDATE mail_outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL,"
        " body_text = CASE WHEN $3 THEN $4 ELSE body_text END WHERE id = $1",
        mail_id,
        now,
        sender.delivers,
        SENT_BODY_PLACEHOLDER,
    )


# Mail the outbox still holds is retried by a job (`deliver_due`): first a
# minute after it was written (the writer sends it at once; the job is for
# what that send missed, or what nobody sent, like expiry reminders), then
# 4, 16 and 64 minutes later; after MAIL_ATTEMPTS_MAX it stays unsent, with
# its last error, for an operator to look at.
MAIL_ATTEMPTS_MAX = 5
MAIL_RETRY_BATCH_MAX = 100


async def deliver_due(pool: asyncpg.Pool, sender: MailSender, *, now: datetime) -> int:
    """Send what is due in the outbox, oldest first; how many were sent."""
    due = await pool.fetch(
        """
        SELECT id FROM mail_outbox
        WHERE sent_at IS NULL AND attempts < $2
          AND created_at <= $1::timestamptz - interval '1 minute' * power(4, attempts)
        ORDER BY id LIMIT $3
        """,
        now,
        MAIL_ATTEMPTS_MAX,
        MAIL_RETRY_BATCH_MAX,
    )
    sent = 0
    for row in due:
        try:
            await deliver(pool, row["id"], sender, now=now)
        except MailNotSent:
            continue  # recorded on the row; retried later
        sent += 1
    return sent


async def latest_mail(
    db: asyncpg.Pool | asyncpg.Connection, limit: int = MAILBOX_MESSAGES_MAX
) -> list[StoredMail]:
    rows = await db.fetch(
        "SELECT id, to_address, subject, body_text, created_at, sent_at, attempts, last_error"
        " FROM mail_outbox ORDER BY id DESC LIMIT $1",
        min(limit, MAILBOX_MESSAGES_MAX),
    )
    return [StoredMail(**dict(r)) for r in rows]
