"""One-time sign-in codes: asking for one, and trading it for a session.

Rules (the numbers are named below):
- a code is 6 digits, lives CODE_TTL_MINUTES, and works once; asking again
  replaces the previous code;
- CODE_ATTEMPTS_MAX wrong codes end the code and start a cool-down of
  CODE_COOLDOWN_MINUTES in which no code is sent or accepted for the address;
- sending is limited per address and per IP, and checking per IP, with
  counters in PostgreSQL (every API process shares them);
- only an HMAC-SHA256 of the code, keyed with a key derived from the server
  secret, is stored: 10^6 codes are too few for a bare hash;
- an unknown address becomes a member (with a card) when its code is
  verified, never before: no member rows for addresses nobody proved;
- a failed check writes only its attempt count; nothing else changes.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from api.coalition.members import create_member, require_active_member
from api.db.pool import transaction
from api.errors import DomainError
from api.mail.outbox import enqueue
from api.mail.smtp import OutgoingMail
from api.member_auth import rate_limits
from api.member_auth.principal import MemberPrincipal
from api.member_auth.rate_limits import Limit, RetryLater
from api.member_auth.sessions import SessionKind, open_session

CODE_DIGITS = 6
CODE_TTL_MINUTES = 10
CODE_ATTEMPTS_MAX = 5
CODE_COOLDOWN_MINUTES = 15
CODE_SENDS_PER_ADDRESS_MAX = 5  # per CODE_SEND_WINDOW
CODE_SENDS_PER_IP_MAX = 20  # per CODE_SEND_WINDOW
CODE_SEND_WINDOW = timedelta(hours=1)
CODE_CHECKS_PER_IP_MAX = 30  # per CODE_CHECK_WINDOW, across all addresses
CODE_CHECK_WINDOW = timedelta(minutes=10)
EMAIL_CHARS_MAX = 254
# One request in this many also deletes what sign-in no longer needs.
PRUNE_ONE_IN = 100
# Kept this long after they end: enough to answer "code_used"/"code_expired"
# and to read a mail's fate, short enough not to hoard addresses of people
# who never signed up.
SIGN_IN_ROWS_KEPT = timedelta(days=1)
MAIL_ROWS_KEPT = timedelta(days=7)

SENDS_PER_ADDRESS = Limit("code-send:address", CODE_SENDS_PER_ADDRESS_MAX, CODE_SEND_WINDOW)
SENDS_PER_IP = Limit("code-send:ip", CODE_SENDS_PER_IP_MAX, CODE_SEND_WINDOW)
CHECKS_PER_IP = Limit("code-check:ip", CODE_CHECKS_PER_IP_MAX, CODE_CHECK_WINDOW)

_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")
_CODE = re.compile(rf"^[0-9]{{{CODE_DIGITS}}}$")


def normalize_email(raw: str) -> str:
    """The address as stored (trimmed, lower-case), or `invalid_email`."""
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_CHARS_MAX or not _EMAIL.match(email):
        raise DomainError("enter a valid e-mail address", code="invalid_email")
    return email


def normalize_code(raw: str) -> str:
    code = "".join(raw.split())  # people type "123 456"
    if not _CODE.match(code):
        raise DomainError(f"the code is {CODE_DIGITS} digits", code="invalid_code")
    return code


def code_hmac(email: str, code: str, *, secret: str) -> bytes:
    key = hmac.new(secret.encode(), b"kring sign-in codes", hashlib.sha256).digest()
    return hmac.new(key, f"{email}\n{code}".encode(), hashlib.sha256).digest()


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds() + 0.999))


def code_mail(email: str, code: str) -> OutgoingMail:
    return OutgoingMail(
        to_address=email,
        subject=f"Your Kring sign-in code: {code}",
        body_text=(
            f"Your Kring sign-in code is {code}.\n\n"
            f"It works once, for {CODE_TTL_MINUTES} minutes. If you did not ask for it,"
            " ignore this mail: nobody can sign in without the code.\n"
        ),
    )


async def _within(pool: asyncpg.Pool, limit: Limit, key: str, *, now: datetime, what: str) -> None:
    retry_after = await rate_limits.hit(pool, limit, key, now=now)
    if retry_after is not None:
        raise RetryLater(
            f"too many {what}; try again in {retry_after // 60 + 1} minutes",
            code="rate_limited",
            retry_after_seconds=retry_after,
        )


async def request_code(
    pool: asyncpg.Pool, raw_email: str, *, ip: str, secret: str, now: datetime
) -> int:
    """Make a code for the address and put its mail in the outbox; the outbox id."""
    email = normalize_email(raw_email)
    if random.randrange(PRUNE_ONE_IN) == 0:
        await prune(pool, now=now)
    await _within(pool, SENDS_PER_IP, ip, now=now, what="codes asked for from here")
    await _within(pool, SENDS_PER_ADDRESS, email, now=now, what="codes asked for this address")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"

    async def work(conn: asyncpg.Connection) -> int:
        cooldown_until = await conn.fetchval(
            "SELECT cooldown_until FROM sign_in_codes WHERE email = $1 FOR UPDATE", email
        )
        if cooldown_until is not None and cooldown_until > now:
            raise _cooling_down(cooldown_until, now)
        await conn.execute(
            "INSERT INTO sign_in_codes (email, code_hmac, issued_at, expires_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO UPDATE SET"
            " code_hmac = EXCLUDED.code_hmac, issued_at = EXCLUDED.issued_at,"
            " expires_at = EXCLUDED.expires_at, attempts = 0, used_at = NULL,"
            " cooldown_until = NULL",
            email,
            code_hmac(email, code, secret=secret),
            now,
            now + timedelta(minutes=CODE_TTL_MINUTES),
        )
        return await enqueue(conn, code_mail(email, code), now=now)

    return await transaction(pool, work)


async def prune(pool: asyncpg.Pool, *, now: datetime) -> None:
    """Delete ended codes, sessions, sent mail and old rate-limit windows."""
    await rate_limits.prune(pool, now=now)
    await pool.execute(
        "DELETE FROM sign_in_codes WHERE expires_at < $1"
        " AND (cooldown_until IS NULL OR cooldown_until < $2)",
        now - SIGN_IN_ROWS_KEPT,
        now,
    )
    await pool.execute(
        "DELETE FROM member_sessions WHERE expires_at < $1 OR revoked_at < $1",
        now - SIGN_IN_ROWS_KEPT,
    )
    await pool.execute("DELETE FROM mail_outbox WHERE sent_at < $1", now - MAIL_ROWS_KEPT)


def _cooling_down(until: datetime, now: datetime) -> RetryLater:
    wait = _seconds_until(until, now)
    return RetryLater(
        f"too many wrong codes for this address; try again in {wait // 60 + 1} minutes",
        code="too_many_attempts",
        retry_after_seconds=wait,
    )


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: MemberPrincipal
    session_id: UUID
    expires_at: datetime
    new_member: bool


async def verify_code(
    pool: asyncpg.Pool,
    raw_email: str,
    raw_code: str,
    *,
    ip: str,
    secret: str,
    now: datetime,
    session_kind: SessionKind,
    session_ttl: timedelta,
) -> SignedIn:
    """Trade a code for a session (creating the member on first sign-in)."""
    email = normalize_email(raw_email)
    code = normalize_code(raw_code)
    await _within(pool, CHECKS_PER_IP, ip, now=now, what="codes tried from here")
    sent_hmac = code_hmac(email, code, secret=secret)

    async def work(conn: asyncpg.Connection) -> SignedIn | DomainError:
        row = await conn.fetchrow(
            "SELECT code_hmac, expires_at, attempts, used_at, cooldown_until"
            " FROM sign_in_codes WHERE email = $1 FOR UPDATE",
            email,
        )
        if row is None:
            return DomainError(
                "no code was sent to this address: ask for a code first", code="invalid_code"
            )
        if row["cooldown_until"] is not None and row["cooldown_until"] > now:
            return _cooling_down(row["cooldown_until"], now)
        matches = hmac.compare_digest(bytes(row["code_hmac"]), sent_hmac)
        if row["used_at"] is not None:
            if matches:
                return DomainError(
                    "this code has been used already: ask for a new one", code="code_used"
                )
            return DomainError("that code is not right", code="invalid_code")
        if row["expires_at"] <= now:
            return DomainError("this code has expired: ask for a new one", code="code_expired")
        if not matches:
            attempts = row["attempts"] + 1
            if attempts >= CODE_ATTEMPTS_MAX:
                until = now + timedelta(minutes=CODE_COOLDOWN_MINUTES)
                # The code dies with the cool-down: a new one is needed afterwards.
                await conn.execute(
                    "UPDATE sign_in_codes SET attempts = $2, cooldown_until = $3,"
                    " expires_at = $4 WHERE email = $1",
                    email,
                    attempts,
                    until,
                    now,
                )
                return _cooling_down(until, now)
            await conn.execute(
                "UPDATE sign_in_codes SET attempts = $2 WHERE email = $1", email, attempts
            )
            left = CODE_ATTEMPTS_MAX - attempts
            return DomainError(
                f"that code is not right ({left} {'try' if left == 1 else 'tries'} left)",
                code="invalid_code",
            )
        await conn.execute("UPDATE sign_in_codes SET used_at = $2 WHERE email = $1", email, now)
        member = await conn.fetchrow(
            "SELECT id, public_id, status FROM members WHERE email = $1", email
        )
        new_member = member is None
        if member is None:
            created = await create_member(conn, now=now, email=email)
            member_id, public_id = created.id, created.public_id
        else:
            require_active_member(member["status"])  # raises: the whole transaction rolls back
            member_id, public_id = member["id"], member["public_id"]
        expires_at = now + session_ttl
        session_id = await open_session(
            conn, member_id, session_kind, now=now, expires_at=expires_at
        )
        return SignedIn(MemberPrincipal(member_id, public_id), session_id, expires_at, new_member)

    # A refusal commits its attempt count (and nothing else), then is raised.
    outcome = await transaction(pool, work)
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome
