"""Reading closed statements: a partner's list, one with its lines, its CSV.

Statements are written once by a settlement run (`api/settlement/run.py`) and
never change, so reads need no locks. A partner only ever reads its own: every
query here takes the partner's id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from api.settlement.periods import business_date

STATEMENTS_PAGE_MAX = 100
CSV_PAGE_ROWS = 5_000
# The order a statement shows its lines in.
LINE_ORDER = ("points_issued", "refunds", "points_redeemed", "sponsored_rewards")
CSV_COLUMNS = (
    "record",
    "category",
    "transaction_id",
    "entry_id",
    "booked_at",
    "entries",
    "points",
    "price_micros",
    "amount_micros",
    "amount_eur",
)


@dataclass(frozen=True, slots=True)
class StatementLine:
    category: str
    entries: int
    points: int
    amount_micros: int  # exact: Σ points x the price stored on each entry
    amount_cents: int  # rounded half-even once; positive = the programme pays the partner


@dataclass(frozen=True, slots=True)
class Statement:
    id: int
    public_id: UUID
    partner_id: int
    partner_code: str
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    entries: int
    net_cents: int  # Σ of the lines' cents; positive = the programme pays the partner
    closed_at: datetime
    lines: tuple[StatementLine, ...]

    @property
    def csv_filename(self) -> str:
        first_day = business_date(self.period_start).isoformat()  # the partner's calendar
        return f"kring-statement-{self.partner_code}-{self.period}-{first_day}.csv"


_SELECT = """
SELECT s.id, s.public_id, s.partner_id, p.code AS partner_code, s.period, s.period_start,
       s.period_end, s.currency, s.entries, s.net_cents, s.closed_at,
       (SELECT coalesce(json_agg(json_build_array(l.category, l.entries, l.points,
                                                  l.amount_micros::text, l.amount_cents)), '[]')
        FROM statement_lines l WHERE l.statement_id = s.id)::text AS lines
FROM statements s JOIN partners p ON p.id = s.partner_id
"""


def _statement(row: asyncpg.Record) -> Statement:
    raw = msgspec.json.decode(row["lines"])
    lines = sorted(
        (StatementLine(c, e, pts, int(micros), cents) for c, e, pts, micros, cents in raw),
        key=lambda line: LINE_ORDER.index(line.category),
    )
    return Statement(
        id=row["id"],
        public_id=row["public_id"],
        partner_id=row["partner_id"],
        partner_code=row["partner_code"],
        period=row["period"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        currency=row["currency"].strip(),
        entries=row["entries"],
        net_cents=row["net_cents"],
        closed_at=row["closed_at"],
        lines=tuple(lines),
    )


async def list_statements(
    conn: asyncpg.Connection | asyncpg.Pool,
    partner_id: int,
    *,
    limit: int,
    before: tuple[datetime, int] | None = None,
) -> list[Statement]:
    """The partner's statements, newest period first; `before` is the
    (period_end, id) of the last one of the previous page."""
    if not 1 <= limit <= STATEMENTS_PAGE_MAX:
        raise ValueError(f"limit must be 1 to {STATEMENTS_PAGE_MAX}")
    rows = await conn.fetch(
        _SELECT + " WHERE s.partner_id = $1"
        " AND ($2::timestamptz IS NULL OR (s.period_end, s.id) < ($2, $3))"
        " ORDER BY s.period_end DESC, s.id DESC LIMIT $4",
        partner_id,
        None if before is None else before[0],
        None if before is None else before[1],
        limit,
    )
    return [_statement(r) for r in rows]


async def get_statement(
    conn: asyncpg.Connection | asyncpg.Pool, partner_id: int, public_id: UUID
) -> Statement | None:
    row = await conn.fetchrow(
        _SELECT + " WHERE s.partner_id = $1 AND s.public_id = $2", partner_id, public_id
    )
    return None if row is None else _statement(row)


def euros(cents: int) -> str:
    """Cents as a plain decimal string for CSV ("-1234.05"); no float involved."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


# The entries behind the lines: one row per earn, refund and capture, with the
# points on the partner's account and the price stored on the entry; a page
# at a time, after entry id $2.
_ENTRIES = """
SELECT e.id AS entry_id, e.transaction_id, e.kind, e.booked_at, p.amount AS points,
       e.price_micros, p.amount::numeric * e.price_micros AS amount_micros
FROM settled_entries se
JOIN journal_entries e ON e.id = se.entry_id
JOIN postings p ON p.entry_id = e.id
JOIN accounts a ON a.id = p.account_id
WHERE se.statement_id = $1 AND se.entry_id > $2 AND e.kind IN ('earn', 'refund', 'capture')
  AND a.kind IN ('partner_points_issued', 'partner_points_redeemed')
ORDER BY se.entry_id
LIMIT $3
"""
_CATEGORY = {"earn": "points_issued", "refund": "refunds", "capture": "points_redeemed"}


async def statement_csv(pool: asyncpg.Pool, statement: Statement) -> AsyncIterator[bytes]:
    """The statement as CSV, streamed: its lines, its net, then every entry
    behind them (exact micro-euros; rounding happens on the lines only)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(CSV_COLUMNS)
    for line in statement.lines:
        writer.writerow(
            (
                "line",
                line.category,
                "",
                "",
                "",
                line.entries,
                line.points,
                "",
                line.amount_micros,
                euros(line.amount_cents),
            )
        )
    writer.writerow(
        ("net", "", "", "", "", statement.entries, "", "", "", euros(statement.net_cents))
    )
    yield flush()
    # Page by entry id, one short query each: a slow download holds no
    # connection and no transaction between pages (a closed statement does
    # not change, so the pages add up to one consistent list).
    after = 0
    while True:
        rows = await pool.fetch(_ENTRIES, statement.id, after, CSV_PAGE_ROWS)
        for row in rows:
            writer.writerow(
                (
                    "entry",
                    _CATEGORY[row["kind"]],
                    row["transaction_id"],
                    row["entry_id"],
                    row["booked_at"].isoformat(),
                    "",
                    abs(row["points"]),
                    row["price_micros"],
                    int(row["amount_micros"]),
                    "",
                )
            )
        yield flush()
        if len(rows) < CSV_PAGE_ROWS:
            return
        after = rows[-1]["entry_id"]
