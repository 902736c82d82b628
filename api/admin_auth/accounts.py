"""Admin accounts: create, disable, sign in (password and a second factor).

Rules (the numbers are named below):
- the password is hashed with argon2id (api/portal/passwords.py);
- the second factor is mandatory: a TOTP code (RFC 6238, 30 s, 6 digits, one
  step of clock drift either way) or one of RECOVERY_CODES_COUNT recovery
  codes, each usable once;
- a TOTP code is accepted once: the last accepted time step is stored and a
  code of that step or an earlier one is refused, with a guarded update so two
  concurrent sign-ins with the same code cannot both pass;
- every failure is the same `invalid_credentials`, whatever was wrong
  (unknown address, wrong password, wrong or reused code, disabled account),
  so that a guesser learns nothing; a wrong address still costs a hash;
- attempts are limited per address and per IP (counters in PostgreSQL, shared
  by every API process), counted before anything is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pyotp

from api.admin_auth.principal import ROLES, AdminPrincipal, Role
from api.errors import Conflict, DomainError, NotFound, Unauthorized
from api.member_auth import rate_limits
from api.member_auth.rate_limits import Limit, RetryLater
from api.portal.passwords import hash_password, verify_password

TOTP_ISSUER = "Kring admin"
TOTP_DRIFT_STEPS = 1  # codes of the previous and next 30 s step are accepted too
TOTP_SECRET_CHARS = 32  # base32: 160 bits, RFC 4226's recommended key length
RECOVERY_CODES_COUNT = 10
RECOVERY_CODE_GROUPS = 4  # xxxx-xxxx-xxxx-xxxx: 16 base32 characters, 80 random bits
RECOVERY_CODE_GROUP_CHARS = 4
EMAIL_CHARS_MAX = 254
CODE_CHARS_MAX = 50
SIGN_INS_PER_ADDRESS_MAX = 10  # per SIGN_IN_WINDOW
SIGN_INS_PER_IP_MAX = 30  # per SIGN_IN_WINDOW, across all addresses
SIGN_IN_WINDOW = timedelta(minutes=15)

SIGN_INS_PER_ADDRESS = Limit("admin-sign-in:address", SIGN_INS_PER_ADDRESS_MAX, SIGN_IN_WINDOW)
SIGN_INS_PER_IP = Limit("admin-sign-in:ip", SIGN_INS_PER_IP_MAX, SIGN_IN_WINDOW)

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f.]+$")
_INVALID = "wrong e-mail, password or code"


@dataclass(frozen=True, slots=True)
class CreatedAdmin:
    """What the creator is shown once and never again."""

    principal: AdminPrincipal
    totp_uri: str
    recovery_codes: list[str]


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not email or len(email) > EMAIL_CHARS_MAX or not _EMAIL.match(email):
        raise DomainError(f"not an e-mail address: {raw!r}", code="invalid_email")
    return email


def _recovery_code_sha256(code: str) -> bytes:
    # Case, spaces and dashes do not matter when typing a code from paper.
    normalized = re.sub(r"[\s-]", "", code).upper()
    return hashlib.sha256(normalized.encode()).digest()


def _new_recovery_code() -> str:
    groups = (
        "".join(secrets.choice(_BASE32) for _ in range(RECOVERY_CODE_GROUP_CHARS))
        for _ in range(RECOVERY_CODE_GROUPS)
    )
    return "-".join(groups)


def _principal(row: asyncpg.Record) -> AdminPrincipal:
    return AdminPrincipal(admin_id=row["id"], email=row["email"], role=row["role"])


async def create_admin(
    conn: asyncpg.Connection, *, email: str, role: str, password: str, now: datetime
) -> CreatedAdmin:
    if role not in ROLES:
        raise DomainError(f"role must be one of {', '.join(ROLES)}", code="invalid_role")
    address = normalize_email(email)
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise DomainError(str(exc), code="invalid_password") from None
    totp_secret = pyotp.random_base32(TOTP_SECRET_CHARS)
    row = await conn.fetchrow(
        "INSERT INTO admin_accounts (email, password_hash, role, totp_secret, created_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id, email, role",
        address,
        password_hash,
        role,
        totp_secret,
        now,
    )
    if row is None:
        raise Conflict(f"an admin {address} exists already", code="admin_exists")
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES_COUNT)]
    await conn.executemany(
        "INSERT INTO admin_recovery_codes (admin_id, code_sha256) VALUES ($1, $2)",
        [(row["id"], _recovery_code_sha256(code)) for code in codes],
    )
    uri = pyotp.TOTP(totp_secret).provisioning_uri(name=address, issuer_name=TOTP_ISSUER)
    return CreatedAdmin(_principal(row), uri, codes)


async def disable_admin(conn: asyncpg.Connection, email: str, *, now: datetime) -> AdminPrincipal:
    """Disable an admin; their tokens stop working at their next call."""
    row = await conn.fetchrow(
        "UPDATE admin_accounts SET disabled_at = coalesce(disabled_at, $2)"
        " WHERE email = $1 RETURNING id, email, role",
        normalize_email(email),
        now,
    )
    if row is None:
        raise NotFound(f"no admin {email}", code="admin_not_found")
    return _principal(row)


async def active_admin(
    db: asyncpg.Pool | asyncpg.Connection, admin_id: int
) -> AdminPrincipal | None:
    row = await db.fetchrow(
        "SELECT id, email, role FROM admin_accounts WHERE id = $1 AND disabled_at IS NULL",
        admin_id,
    )
    return None if row is None else _principal(row)


async def backoffice_session_admin(
    db: asyncpg.Pool | asyncpg.Connection, admin_id: int, generation: int
) -> AdminPrincipal | None:
    """The admin of a back-office session, if active and not signed out since
    the session began (its generation is still the admin's)."""
    row = await db.fetchrow(
        "SELECT id, email, role FROM admin_accounts"
        " WHERE id = $1 AND disabled_at IS NULL AND session_generation = $2",
        admin_id,
        generation,
    )
    return None if row is None else _principal(row)


async def session_generation(db: asyncpg.Pool | asyncpg.Connection, admin_id: int) -> int:
    """The generation a new back-office session of this admin carries."""
    generation = await db.fetchval(
        "SELECT session_generation FROM admin_accounts WHERE id = $1", admin_id
    )
    if generation is None:
        raise NotFound(f"no admin {admin_id}", code="admin_not_found")
    return int(generation)


async def end_backoffice_sessions(db: asyncpg.Pool | asyncpg.Connection, admin_id: int) -> None:
    """Sign the admin out of the back-office everywhere: every session issued
    so far stops working at its next request."""
    await db.execute(
        "UPDATE admin_accounts SET session_generation = session_generation + 1 WHERE id = $1",
        admin_id,
    )


async def current_totp_code(
    db: asyncpg.Pool | asyncpg.Connection, email: str, *, now: datetime
) -> str:
    """The code an admin's authenticator shows at `now` (for `kring admin code`
    in development and demos; never offered in production)."""
    secret = await db.fetchval(
        "SELECT totp_secret FROM admin_accounts WHERE email = $1 AND disabled_at IS NULL",
        normalize_email(email),
    )
    if secret is None:
        raise NotFound(f"no active admin {email}", code="admin_not_found")
    return str(pyotp.TOTP(secret).at(now))


def _matching_step(totp_secret: str, code: str, now: datetime) -> int | None:
    """The time step (within the allowed drift) whose code this is, else None."""
    totp = pyotp.TOTP(totp_secret)
    current = totp.timecode(now)
    found = None
    # Every candidate is compared, in constant time, so timing tells nothing.
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


async def _second_factor_ok(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    *,
    totp_code: str | None,
    recovery_code: str | None,
    now: datetime,
) -> bool:
    if totp_code is not None:
        step = _matching_step(row["totp_secret"], totp_code.strip(), now)
        if step is None:
            return False
        # Guarded: of two sign-ins racing with one code, one wins.
        status: str = await conn.execute(
            "UPDATE admin_accounts SET totp_last_step = $2"
            " WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            row["id"],
            step,
        )
        return status == "UPDATE 1"
    if recovery_code is not None:
        status = await conn.execute(
            "UPDATE admin_recovery_codes SET used_at = $3"
            " WHERE admin_id = $1 AND code_sha256 = $2 AND used_at IS NULL",
            row["id"],
            _recovery_code_sha256(recovery_code),
            now,
        )
        return status == "UPDATE 1"
    return False


async def sign_in(
    pool: asyncpg.Pool,
    *,
    email: str,
    password: str,
    totp_code: str | None,
    recovery_code: str | None,
    ip: str,
    now: datetime,
) -> AdminPrincipal:
    """The admin these credentials prove, or `invalid_credentials` / `rate_limited`."""
    if (totp_code is None) == (recovery_code is None):
        raise DomainError("send exactly one of totp_code and recovery_code", code="invalid_request")
    address = email.strip().lower()[:EMAIL_CHARS_MAX]
    for limit, key in ((SIGN_INS_PER_ADDRESS, address), (SIGN_INS_PER_IP, ip)):
        retry_after = await rate_limits.hit(pool, limit, key, now=now)
        if retry_after is not None:
            raise RetryLater(
                f"too many sign-in attempts: try again in {retry_after} seconds",
                code="rate_limited",
                retry_after_seconds=retry_after,
            )
    code = totp_code if totp_code is not None else recovery_code
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, email, role, password_hash, totp_secret, disabled_at"
            " FROM admin_accounts WHERE email = $1",
            address,
        )
        # Always hash, so a wrong address takes as long as a wrong password.
        password_ok = verify_password(row["password_hash"] if row else None, password)
        if row is None or not password_ok or row["disabled_at"] is not None:
            raise Unauthorized(_INVALID, code="invalid_credentials")
        if code is None or len(code) > CODE_CHARS_MAX:
            raise Unauthorized(_INVALID, code="invalid_credentials")
        if not await _second_factor_ok(
            conn, row, totp_code=totp_code, recovery_code=recovery_code, now=now
        ):
            raise Unauthorized(_INVALID, code="invalid_credentials")
    if row["role"] not in ROLES:
        raise Unauthorized(_INVALID, code="invalid_credentials")
    role: Role = row["role"]
    return AdminPrincipal(admin_id=row["id"], email=row["email"], role=role)
