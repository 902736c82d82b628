"""What programme admins do to partners: list and read them, create them,
change their terms, status and bank details, rotate their credentials.

Every change runs on the caller's connection inside its transaction and
writes its audit row there (api/admin_auth/audit.py), with the partner's
state before and after, so the change and its record commit together.

Terms live on the partner's row and every ledger entry stores the price and
rate that applied when it was booked (DESIGN: "each ledger entry stores the
price that applied"), so a change applies from the next earn or burn on and
never rewrites a past entry or a closed statement.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal
from api.coalition.banking import BankDetails
from api.coalition.partners import (
    Credentials,
    NewPartner,
    create_partner,
    rotate_credentials,
    set_bank_details,
    set_partner_status,
)
from api.errors import DomainError, NotFound

PARTNER_STATUSES = ("active", "suspended")
# The partners table's CHECKs, checked first so that bad input is a message, not a 500.
PARTNER_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
NAME_CHARS_MAX = 200
KIND_CHARS_MAX = 50
KINDS_LISTED_MAX = 100
NAME_FILTER_CHARS_MAX = 100
WEBHOOK_DELIVERIES_SHOWN = 20


@dataclass(frozen=True, slots=True)
class PartnerTermsChange:
    """The money terms an admin may change; each applies from the next entry on."""

    earn_rate_millipoints_per_euro: int
    issuance_price_micros: int
    redemption_price_micros: int
    return_window_days: int


@dataclass(frozen=True, slots=True)
class PartnerRow:
    id: int
    code: str
    name: str
    kind: str
    status: str
    currency: str
    earn_rate_millipoints_per_euro: int
    issuance_price_micros: int
    redemption_price_micros: int
    return_window_days: int
    settlement_period: str
    iban: str | None
    bic: str | None
    account_holder: str | None
    created_at: datetime

    def terms(self) -> dict[str, int]:
        return {
            "earn_rate_millipoints_per_euro": self.earn_rate_millipoints_per_euro,
            "issuance_price_micros": self.issuance_price_micros,
            "redemption_price_micros": self.redemption_price_micros,
            "return_window_days": self.return_window_days,
        }

    def bank(self) -> dict[str, str | None]:
        return {"iban": self.iban, "bic": self.bic, "account_holder": self.account_holder}


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRow:
    endpoint_url: str
    event_type: str
    status: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None


_COLUMNS = """
    p.id, p.code, p.name, p.kind, p.status, p.currency::text AS currency,
    p.earn_rate_millipoints_per_euro, p.issuance_price_micros, p.redemption_price_micros,
    p.return_window_days, p.settlement_period, p.iban, p.bic, p.account_holder, p.created_at
"""


def _row(row: asyncpg.Record) -> PartnerRow:
    values = dict(row)
    values["currency"] = values["currency"].strip()
    return PartnerRow(**values)


async def list_partners(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int,
    status: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    after_code: str | None = None,
) -> list[PartnerRow]:
    """Partners by code, `limit` of them after `after_code`; a None filter is off.
    `name` matches a part of the name or the code, case-insensitively."""
    pattern = None
    if name:
        escaped = name[:NAME_FILTER_CHARS_MAX].replace("\\", "\\\\")
        pattern = "%" + escaped.replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM partners p"
        " WHERE ($1::text IS NULL OR p.status = $1)"
        " AND ($2::text IS NULL OR p.kind = $2)"
        " AND ($3::text IS NULL OR p.name ILIKE $3 OR p.code ILIKE $3)"
        " AND ($4::text IS NULL OR p.code > $4)"
        " ORDER BY p.code LIMIT $5",
        status,
        kind,
        pattern,
        after_code,
        limit,
    )
    return [_row(r) for r in rows]


async def partner_kinds(db: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """The kinds in use, for the filter's choices (a coalition has a handful)."""
    rows = await db.fetch(
        "SELECT DISTINCT kind FROM partners ORDER BY kind LIMIT $1", KINDS_LISTED_MAX
    )
    return [r["kind"] for r in rows]


async def get_partner(
    db: asyncpg.Pool | asyncpg.Connection, code: str, *, lock: bool = False
) -> PartnerRow:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM partners p WHERE p.code = $1" + (" FOR UPDATE" if lock else ""),
        code,
    )
    if row is None:
        raise NotFound(f"there is no partner {code!r}", code="partner_not_found")
    return _row(row)


async def active_client_ids(db: asyncpg.Pool | asyncpg.Connection, partner_id: int) -> list[str]:
    rows = await db.fetch(
        "SELECT client_id FROM partner_credentials WHERE partner_id = $1 AND revoked_at IS NULL"
        " ORDER BY created_at DESC",
        partner_id,
    )
    return [r["client_id"] for r in rows]


async def recent_webhook_deliveries(
    db: asyncpg.Pool | asyncpg.Connection, partner_id: int
) -> list[WebhookDeliveryRow]:
    rows = await db.fetch(
        "SELECT w.url, e.type, d.status, d.attempts, e.created_at, d.delivered_at"
        " FROM webhook_deliveries d"
        " JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " JOIN webhook_events e ON e.id = d.event_id"
        " WHERE w.partner_id = $1 ORDER BY d.id DESC LIMIT $2",
        partner_id,
        WEBHOOK_DELIVERIES_SHOWN,
    )
    return [
        WebhookDeliveryRow(
            r["url"], r["type"], r["status"], r["attempts"], r["created_at"], r["delivered_at"]
        )
        for r in rows
    ]


def valid_code(code: str) -> bool:
    return PARTNER_CODE.fullmatch(code) is not None


def _subject(code: str) -> str:
    return f"partner:{code}"


async def create_partner_audited(
    conn: asyncpg.Connection, new: NewPartner, admin: AdminPrincipal, now: datetime
) -> Credentials:
    """Create the partner and its first credentials; the secret is in the
    answer only (stored as its SHA-256), never in the audit row."""
    if not valid_code(new.code):
        raise DomainError(
            "a code is 2 to 63 lowercase letters, digits and hyphens", code="invalid_partner"
        )
    if not 1 <= len(new.name) <= NAME_CHARS_MAX or not 1 <= len(new.kind) <= KIND_CHARS_MAX:
        raise DomainError(
            f"a name has 1 to {NAME_CHARS_MAX} characters, a kind 1 to {KIND_CHARS_MAX}",
            code="invalid_partner",
        )
    creds = await create_partner(conn, new, now=now)
    created = await get_partner(conn, new.code)
    after: dict[str, Any] = {
        "code": created.code,
        "name": created.name,
        "kind": created.kind,
        "currency": created.currency,
        "settlement_period": created.settlement_period,
        **created.terms(),
        **created.bank(),
        "client_id": creds.client_id,
    }
    await audit.record(conn, admin, "partner.create", _subject(new.code), None, after, now)
    return creds


async def change_terms(
    conn: asyncpg.Connection,
    code: str,
    change: PartnerTermsChange,
    admin: AdminPrincipal,
    now: datetime,
) -> PartnerRow:
    """New rates, prices and return window, from the next entry on."""
    current = await get_partner(conn, code, lock=True)
    # The same rules as at creation (ranges), checked before anything is written.
    NewPartner(
        code=current.code,
        name=current.name,
        kind=current.kind,
        currency=current.currency,
        settlement_period=current.settlement_period,
        **asdict(change),
    ).validate()
    if current.terms() == asdict(change):
        raise DomainError("these are the partner's terms already", code="terms_unchanged")
    await conn.execute(
        "UPDATE partners SET earn_rate_millipoints_per_euro = $2, issuance_price_micros = $3,"
        " redemption_price_micros = $4, return_window_days = $5 WHERE id = $1",
        current.id,
        change.earn_rate_millipoints_per_euro,
        change.issuance_price_micros,
        change.redemption_price_micros,
        change.return_window_days,
    )
    await audit.record(
        conn, admin, "partner.terms.change", _subject(code), current.terms(), asdict(change), now
    )
    return await get_partner(conn, code)


async def change_status(
    conn: asyncpg.Connection, code: str, status: str, admin: AdminPrincipal, now: datetime
) -> PartnerRow:
    """Suspend (its tokens and credentials stop working, earn and burn are
    refused) or reactivate a partner."""
    if status not in PARTNER_STATUSES:
        raise DomainError(
            f"status must be one of {', '.join(PARTNER_STATUSES)}", code="invalid_status"
        )
    current = await get_partner(conn, code, lock=True)
    if current.status == status:
        raise DomainError(f"the partner is {status} already", code="status_unchanged")
    await set_partner_status(conn, current.id, status)
    await audit.record(
        conn,
        admin,
        "partner.status.change",
        _subject(code),
        {"status": current.status},
        {"status": status},
        now,
    )
    return await get_partner(conn, code)


async def change_bank_details(
    conn: asyncpg.Connection,
    code: str,
    *,
    iban: str,
    bic: str | None,
    account_holder: str | None,
    admin: AdminPrincipal,
    now: datetime,
) -> BankDetails:
    """Validated (schwifty) before anything is written; a refusal writes nothing."""
    current = await get_partner(conn, code, lock=True)
    if not iban:
        raise DomainError("type the IBAN", code="invalid_iban")
    bank = await set_bank_details(
        conn, current.id, iban=iban, bic=bic or None, account_holder=account_holder
    )
    after = {"iban": bank.iban, "bic": bank.bic, "account_holder": bank.account_holder}
    await audit.record(
        conn, admin, "partner.bank.change", _subject(code), current.bank(), after, now
    )
    return bank


async def rotate_credentials_audited(
    conn: asyncpg.Connection, code: str, admin: AdminPrincipal, now: datetime
) -> Credentials:
    """New client id and secret; every older one stops working at once."""
    current = await get_partner(conn, code, lock=True)
    before = await active_client_ids(conn, current.id)
    creds = await rotate_credentials(conn, current.id, now=now)
    await audit.record(
        conn,
        admin,
        "partner.credentials.rotate",
        _subject(code),
        {"client_ids": before},
        {"client_ids": [creds.client_id]},
        now,
    )
    return creds
