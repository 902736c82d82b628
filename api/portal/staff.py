"""Partner staff accounts: who may sign in to the portal, for which partner."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg

from api.errors import Conflict, DomainError, NotFound
from api.member_auth.rate_limits import Limit
from api.portal.passwords import hash_password, verify_password

Role = Literal["cashier", "manager"]
ROLES: tuple[Role, ...] = ("cashier", "manager")
EMAIL_LENGTH_MAX = 254
NAME_LENGTH_MAX = 100
# Sign-in attempts, counted in PostgreSQL so that every API process shares them
# (the same numbers as admin sign-in): argon2 makes each guess slow, this makes
# guessing one account's password from many places, or many from one, slow too.
SIGN_INS_PER_ADDRESS_MAX = 10  # per SIGN_IN_WINDOW
SIGN_INS_PER_IP_MAX = 30  # per SIGN_IN_WINDOW, across all addresses
SIGN_IN_WINDOW = timedelta(minutes=15)
SIGN_INS_PER_ADDRESS = Limit("portal-sign-in:address", SIGN_INS_PER_ADDRESS_MAX, SIGN_IN_WINDOW)
SIGN_INS_PER_IP = Limit("portal-sign-in:ip", SIGN_INS_PER_IP_MAX, SIGN_IN_WINDOW)
# Deliberately loose: one @, something either side, no spaces. The address is a login name.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Staff:
    id: int
    partner_id: int
    partner_public_id: UUID
    partner_name: str
    email: str
    display_name: str
    role: Role


_STAFF_COLUMNS = """
s.id, s.partner_id, p.public_id AS partner_public_id, p.name AS partner_name,
s.email, s.display_name, s.role, s.password_hash
"""


def _staff(row: asyncpg.Record) -> Staff:
    return Staff(
        id=row["id"],
        partner_id=row["partner_id"],
        partner_public_id=row["partner_public_id"],
        partner_name=row["partner_name"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
    )


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def create_staff(
    conn: asyncpg.Connection,
    *,
    partner_code: str,
    email: str,
    display_name: str,
    password: str,
    role: Role = "cashier",
    now: datetime,
) -> Staff:
    email = normalize_email(email)
    display_name = display_name.strip()
    if len(email) > EMAIL_LENGTH_MAX or not _EMAIL.match(email):
        raise DomainError(f"{email!r} is not an email address", code="invalid_email")
    if not 1 <= len(display_name) <= NAME_LENGTH_MAX:
        raise DomainError(
            f"the name has 1 to {NAME_LENGTH_MAX} characters", code="invalid_display_name"
        )
    if role not in ROLES:
        raise DomainError(f"the role is one of {', '.join(ROLES)}", code="invalid_role")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise DomainError(str(exc), code="invalid_password") from None
    partner_id = await conn.fetchval("SELECT id FROM partners WHERE code = $1", partner_code)
    if partner_id is None:
        raise NotFound(f"no partner with code {partner_code!r}", code="partner_not_found")
    try:
        staff_id = await conn.fetchval(
            """INSERT INTO partner_staff (partner_id, email, display_name, password_hash, role, created_at)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            partner_id,
            email,
            display_name,
            password_hash,
            role,
            now,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"{email} already has a portal account", code="staff_exists") from None
    found = await find_active_staff(conn, staff_id)
    assert found is not None  # just inserted, in this transaction
    return found


async def authenticate(conn: asyncpg.Connection, email: str, password: str) -> Staff | None:
    """The active staff member with this email and password, or None (no reason given)."""
    row = await conn.fetchrow(
        f"""SELECT {_STAFF_COLUMNS} FROM partner_staff s JOIN partners p ON p.id = s.partner_id
            WHERE s.email = $1 AND s.disabled_at IS NULL AND p.status = 'active'""",
        normalize_email(email),
    )
    # Verify even without a row: an unknown email costs the same time as a wrong password.
    if not verify_password(None if row is None else row["password_hash"], password):
        return None
    return None if row is None else _staff(row)


async def find_active_staff(conn: asyncpg.Connection | asyncpg.Pool, staff_id: int) -> Staff | None:
    """Checked on every portal request, so disabling an account signs it out at once."""
    row = await conn.fetchrow(
        f"""SELECT {_STAFF_COLUMNS} FROM partner_staff s JOIN partners p ON p.id = s.partner_id
            WHERE s.id = $1 AND s.disabled_at IS NULL AND p.status = 'active'""",
        staff_id,
    )
    return None if row is None else _staff(row)
