"""Partners: their terms, and API credentials (client id + secret).

Client secrets are 256-bit random strings, so a single SHA-256 is a sound
way to store them (no salt or slow hash is needed for a secret that cannot
be guessed); passwords, which people choose, are another matter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.coalition.banking import BankDetails, validate_bank_details
from api.errors import DomainError
from api.ledger.accounts import open_partner_accounts
from api.ledger.terms import PartnerTerms
from api.money import EARN_RATE_MILLIPOINTS_PER_EURO_MAX, PRICE_MICROS_MAX, is_iso_currency
from api.settlement.periods import PERIODS

DEFAULT_EARN_RATE_MILLIPOINTS_PER_EURO = 1_000  # 1 point per euro
DEFAULT_ISSUANCE_PRICE_MICROS = 10_000  # the partner pays 1.0 cent per point issued
DEFAULT_REDEMPTION_PRICE_MICROS = 8_000  # the programme pays 0.8 cent per point burned
DEFAULT_RETURN_WINDOW_DAYS = 14


@dataclass(frozen=True, slots=True)
class NewPartner:
    code: str
    name: str
    kind: str
    currency: str = "EUR"
    earn_rate_millipoints_per_euro: int = DEFAULT_EARN_RATE_MILLIPOINTS_PER_EURO
    issuance_price_micros: int = DEFAULT_ISSUANCE_PRICE_MICROS
    redemption_price_micros: int = DEFAULT_REDEMPTION_PRICE_MICROS
    return_window_days: int = DEFAULT_RETURN_WINDOW_DAYS
    settlement_period: str = "daily"  # daily, weekly or monthly statements
    # Where payouts go; all optional at creation (see api.coalition.banking).
    iban: str | None = None
    bic: str | None = None
    account_holder: str | None = None

    def bank_details(self) -> BankDetails | None:
        """The normalised bank details, None if none were given; raises if invalid."""
        return validate_bank_details(self.iban, self.bic, self.account_holder)

    def validate(self) -> None:
        if not is_iso_currency(self.currency):
            raise DomainError(f"unknown currency {self.currency!r}", code="unknown_currency")
        if not 0 <= self.earn_rate_millipoints_per_euro <= EARN_RATE_MILLIPOINTS_PER_EURO_MAX:
            raise DomainError("earn rate out of range", code="invalid_partner")
        for price in (self.issuance_price_micros, self.redemption_price_micros):
            if not 0 <= price <= PRICE_MICROS_MAX:
                raise DomainError("price per point out of range", code="invalid_partner")
        if not 0 <= self.return_window_days <= 365:
            raise DomainError("return window must be 0 to 365 days", code="invalid_partner")
        if self.settlement_period not in PERIODS:
            raise DomainError(
                f"settlement period must be one of {', '.join(PERIODS)}", code="invalid_partner"
            )
        self.bank_details()


@dataclass(frozen=True, slots=True)
class Credentials:
    partner_id: int
    partner_public_id: UUID
    client_id: str
    client_secret: str


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_partner(
    conn: asyncpg.Connection, new: NewPartner, *, now: datetime
) -> Credentials:
    new.validate()
    bank = new.bank_details()
    row = await conn.fetchrow(
        """
        INSERT INTO partners (code, name, kind, currency, earn_rate_millipoints_per_euro,
                              issuance_price_micros, redemption_price_micros,
                              return_window_days, created_at, iban, bic, account_holder,
                              settlement_period)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (code) DO NOTHING
        RETURNING id, public_id
        """,
        new.code,
        new.name,
        new.kind,
        new.currency,
        new.earn_rate_millipoints_per_euro,
        new.issuance_price_micros,
        new.redemption_price_micros,
        new.return_window_days,
        now,
        bank.iban if bank else None,
        bank.bic if bank else None,
        bank.account_holder if bank else None,
        new.settlement_period,
    )
    if row is None:
        raise DomainError(f"a partner with code {new.code!r} exists", code="partner_exists")
    await open_partner_accounts(conn, row["id"])
    return await issue_credentials(conn, row["id"], row["public_id"], now=now)


async def issue_credentials(
    conn: asyncpg.Connection, partner_id: int, public_id: UUID, *, now: datetime
) -> Credentials:
    client_id = "kp_" + secrets.token_hex(12)
    secret = "ks_" + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO partner_credentials (client_id, partner_id, secret_sha256, created_at)"
        " VALUES ($1, $2, $3, $4)",
        client_id,
        partner_id,
        hash_secret(secret),
        now,
    )
    return Credentials(partner_id, public_id, client_id, secret)


async def rotate_credentials(
    conn: asyncpg.Connection, partner_id: int, *, now: datetime
) -> Credentials:
    """Issue a new client id and secret and revoke every older one."""
    public_id = await conn.fetchval("SELECT public_id FROM partners WHERE id = $1", partner_id)
    if public_id is None:
        raise DomainError("no such partner", code="partner_not_found", status=404)
    await conn.execute(
        "UPDATE partner_credentials SET revoked_at = $2 WHERE partner_id = $1 AND revoked_at IS NULL",
        partner_id,
        now,
    )
    return await issue_credentials(conn, partner_id, public_id, now=now)


async def verify_credentials(
    conn: asyncpg.Connection, client_id: str, client_secret: str
) -> tuple[int, UUID] | None:
    """The partner (id, public id) for valid, unrevoked credentials of an active partner."""
    row = await conn.fetchrow(
        "SELECT c.secret_sha256, p.id, p.public_id FROM partner_credentials c"
        " JOIN partners p ON p.id = c.partner_id"
        " WHERE c.client_id = $1 AND c.revoked_at IS NULL AND p.status = 'active'",
        client_id,
    )
    if row is None or not hmac.compare_digest(row["secret_sha256"], hash_secret(client_secret)):
        return None
    return row["id"], row["public_id"]


async def set_bank_details(
    conn: asyncpg.Connection,
    partner_id: int,
    *,
    iban: str,
    bic: str | None = None,
    account_holder: str | None = None,
) -> BankDetails:
    """Replace a partner's bank details; validated first, so a refusal writes nothing."""
    bank = validate_bank_details(iban, bic, account_holder)
    assert bank is not None  # an IBAN was given, so there are details or an error
    updated = await conn.fetchval(
        "UPDATE partners SET iban = $2, bic = $3, account_holder = $4 WHERE id = $1 RETURNING id",
        partner_id,
        bank.iban,
        bank.bic,
        bank.account_holder,
    )
    if updated is None:
        raise DomainError("no such partner", code="partner_not_found", status=404)
    return bank


async def set_partner_status(conn: asyncpg.Connection, partner_id: int, status: str) -> None:
    await conn.execute("UPDATE partners SET status = $2 WHERE id = $1", partner_id, status)


# Columns that, with the partner's two points accounts joined as `pi` and
# `pr`, build PartnerTerms. Shared by readers that need terms with other rows.
TERMS_COLUMNS = """
    p.id AS partner_id, p.status AS partner_status, p.currency,
    p.earn_rate_millipoints_per_euro, p.issuance_price_micros, p.redemption_price_micros,
    p.return_window_days, pi.id AS points_issued_id, pr.id AS points_redeemed_id
"""


def terms_joins(shard_param: str) -> str:
    """Joins for TERMS_COLUMNS; `shard_param` (e.g. "$4") names the account shard."""
    return f"""
    JOIN accounts pi ON pi.partner_id = p.id AND pi.kind = 'partner_points_issued'
                    AND pi.shard = {shard_param}
    JOIN accounts pr ON pr.partner_id = p.id AND pr.kind = 'partner_points_redeemed'
                    AND pr.shard = {shard_param}
"""


def terms_from(row: asyncpg.Record) -> PartnerTerms:
    return PartnerTerms(
        partner_id=row["partner_id"],
        status=row["partner_status"],
        currency=row["currency"],
        earn_rate_millipoints_per_euro=row["earn_rate_millipoints_per_euro"],
        issuance_price_micros=row["issuance_price_micros"],
        redemption_price_micros=row["redemption_price_micros"],
        return_window_days=row["return_window_days"],
        points_issued_id=row["points_issued_id"],
        points_redeemed_id=row["points_redeemed_id"],
    )


def require_active_partner(terms: PartnerTerms) -> None:
    if terms.status != "active":
        raise DomainError("this partner is suspended", code="partner_suspended", status=403)
