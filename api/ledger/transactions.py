"""Transactions: what a partner did for a member (earn, burn, refund), as rows.

Each ledger plan knows the row it will leave behind (`TransactionRow`), so an
answer can be rendered, and stored with its idempotency key, before the one
statement that writes it all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: UUID
    partner_id: int
    member_id: int
    kind: str
    status: str
    amount_cents: int | None
    currency: str | None
    points: int
    points_captured: int
    points_refunded: int
    amount_refunded_cents: int
    debt_points: int
    debt_repaid_points: int
    price_micros: int
    receipt_ref: str | None
    store_id: str | None
    original_id: UUID | None
    occurred_at: datetime
    created_at: datetime
    available_at: datetime | None
    hold_expires_at: datetime | None
    finished_at: datetime | None

    def replace(self, **changes: object) -> TransactionRow:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TransactionRow))
COLUMNS = ", ".join(_FIELD_NAMES)
PAGE_SIZE_MAX = 100


def row_from(record: asyncpg.Record) -> TransactionRow:
    return TransactionRow(**{name: record[name] for name in _FIELD_NAMES})


async def load_transaction(conn: asyncpg.Connection, transaction_id: UUID) -> TransactionRow | None:
    record = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM transactions WHERE id = $1", transaction_id
    )
    return None if record is None else row_from(record)
