"""Settlement runs as the back-office sees them, and their approval.

A run's statements are final when it closes; what an admin approves is
paying them: the run's SEPA payout file is released only once a finance
person or the owner has approved it, and never by the admin who started the
run (maker-checker; also a CHECK on `settlement_runs`). Approving is audited
in its own transaction, as is each release of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from api.admin_auth import audit
from api.admin_auth.principal import AdminPrincipal
from api.errors import Conflict, DomainError, NotFound
from api.settlement.payouts import RunPayouts

RUN_STATUSES = ("awaiting", "approved")
PARTNER_CODE_FILTER_CHARS_MAX = 63


@dataclass(frozen=True, slots=True)
class RunView:
    id: int
    business_date: date
    period_end: datetime
    started_at: datetime
    finished_at: datetime | None
    statements: int
    entries: int
    started_by_admin_id: int | None
    started_by_email: str | None
    approved_by_email: str | None
    approved_at: datetime | None
    owed_to_partners_cents: int  # Σ positive nets: what the programme pays
    owed_by_partners_cents: int  # Σ negative nets, as a positive number

    @property
    def approved(self) -> bool:
        return self.approved_at is not None


@dataclass(frozen=True, slots=True)
class StatementRow:
    id: int
    run_id: int
    business_date: date
    partner_code: str
    partner_name: str
    period: str
    period_start: datetime
    period_end: datetime
    entries: int
    net_cents: int
    closed_at: datetime


_RUN_SELECT = """
SELECT r.id, r.business_date, r.period_end, r.started_at, r.finished_at, r.statements,
       r.entries, r.started_by_admin_id, starter.email AS started_by_email,
       approver.email AS approved_by_email, r.approved_at,
       coalesce((SELECT sum(s.net_cents) FILTER (WHERE s.net_cents > 0) FROM statements s
                 WHERE s.run_id = r.id AND s.partner_id IS NOT NULL), 0)::bigint
           AS owed_to_partners_cents,
       coalesce(-(SELECT sum(s.net_cents) FILTER (WHERE s.net_cents < 0) FROM statements s
                  WHERE s.run_id = r.id AND s.partner_id IS NOT NULL), 0)::bigint
           AS owed_by_partners_cents
FROM settlement_runs r
LEFT JOIN admin_accounts starter ON starter.id = r.started_by_admin_id
LEFT JOIN admin_accounts approver ON approver.id = r.approved_by_admin_id
"""


def _run(row: asyncpg.Record) -> RunView:
    return RunView(**dict(row))


async def list_runs(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int,
    status: str | None = None,
    since: date | None = None,
    until: date | None = None,
    before: date | None = None,
) -> list[RunView]:
    """Runs newest day first; `since` and `until` inclusive business days;
    `before` is the last day of the previous page."""
    if status is not None and status not in RUN_STATUSES:
        raise DomainError(
            f"status must be one of {', '.join(RUN_STATUSES)}", code="invalid_status", status=400
        )
    rows = await db.fetch(
        _RUN_SELECT + " WHERE ($1::text IS NULL OR (r.approved_at IS NOT NULL) = ($1 = 'approved'))"
        " AND ($2::date IS NULL OR r.business_date >= $2)"
        " AND ($3::date IS NULL OR r.business_date <= $3)"
        " AND ($4::date IS NULL OR r.business_date < $4)"
        " ORDER BY r.business_date DESC LIMIT $5",
        status,
        since,
        until,
        before,
        limit,
    )
    return [_run(r) for r in rows]


async def get_run(db: asyncpg.Pool | asyncpg.Connection, run_id: int) -> RunView:
    row = await db.fetchrow(_RUN_SELECT + " WHERE r.id = $1", run_id)
    if row is None:
        raise NotFound("there is no such settlement run", code="settlement_run_not_found")
    return _run(row)


async def run_of_day(db: asyncpg.Pool | asyncpg.Connection, day: date) -> int | None:
    run_id: int | None = await db.fetchval(
        "SELECT id FROM settlement_runs WHERE business_date = $1", day
    )
    return run_id


_STATEMENT_SELECT = """
SELECT s.id, s.run_id, r.business_date, p.code AS partner_code, p.name AS partner_name,
       s.period, s.period_start, s.period_end, s.entries, s.net_cents, s.closed_at
FROM statements s
JOIN settlement_runs r ON r.id = s.run_id
JOIN partners p ON p.id = s.partner_id
"""


async def list_statements(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    limit: int,
    run_id: int | None = None,
    partner_code: str | None = None,
    period: str | None = None,
    since: date | None = None,
    until: date | None = None,
    after: tuple[date, str] | None = None,
) -> list[StatementRow]:
    """Partner statements, newest business day first, then by partner code;
    `after` is the (business day, partner code) of the previous page's last row."""
    rows = await db.fetch(
        _STATEMENT_SELECT + " WHERE ($1::bigint IS NULL OR s.run_id = $1)"
        " AND ($2::text IS NULL OR p.code = $2)"
        " AND ($3::text IS NULL OR s.period = $3)"
        " AND ($4::date IS NULL OR r.business_date >= $4)"
        " AND ($5::date IS NULL OR r.business_date <= $5)"
        " AND ($6::date IS NULL OR (r.business_date < $6 OR (r.business_date = $6 AND p.code > $7)))"
        " ORDER BY r.business_date DESC, p.code LIMIT $8",
        run_id,
        partner_code[:PARTNER_CODE_FILTER_CHARS_MAX] if partner_code else None,
        period,
        since,
        until,
        None if after is None else after[0],
        None if after is None else after[1],
        limit,
    )
    return [StatementRow(**dict(r)) for r in rows]


async def statement_key(db: asyncpg.Pool | asyncpg.Connection, statement_id: int) -> asyncpg.Record:
    """(partner_id, public_id) of a partner statement, for statements.get_statement."""
    row = await db.fetchrow(
        "SELECT partner_id, public_id FROM statements WHERE id = $1 AND partner_id IS NOT NULL",
        statement_id,
    )
    if row is None:
        raise NotFound("there is no such statement", code="statement_not_found")
    return row


async def approve_run(
    conn: asyncpg.Connection, run_id: int, admin: AdminPrincipal, payouts: RunPayouts, now: datetime
) -> RunView:
    """Approve a closed run's payouts; the checker may not be the maker."""
    row = await conn.fetchrow(
        "SELECT id, business_date, finished_at, started_by_admin_id, approved_at"
        " FROM settlement_runs WHERE id = $1 FOR UPDATE",
        run_id,
    )
    if row is None:
        raise NotFound("there is no such settlement run", code="settlement_run_not_found")
    if row["finished_at"] is None:
        raise Conflict("this run has not finished", code="settlement_run_running")
    if row["approved_at"] is not None:
        raise Conflict("this run is approved already", code="settlement_run_approved")
    if row["started_by_admin_id"] == admin.admin_id:
        raise DomainError(
            "you started this run: another admin must approve it",
            code="approver_started_run",
            status=403,
        )
    await conn.execute(
        "UPDATE settlement_runs SET approved_by_admin_id = $2, approved_at = $3 WHERE id = $1",
        run_id,
        admin.admin_id,
        now,
    )
    await audit.record(
        conn,
        admin,
        "settlement.run.approve",
        f"settlement_run:{row['business_date'].isoformat()}",
        {"approved": False},
        {
            "approved": True,
            "payouts": len(payouts.payouts),
            "payout_cents": payouts.payout_cents,
            "flagged": len(payouts.flagged),
            "flagged_cents": payouts.flagged_cents,
        },
        now,
    )
    return await get_run(conn, run_id)


async def record_payout_file(
    conn: asyncpg.Connection,
    run: RunView,
    admin: AdminPrincipal,
    payouts: RunPayouts,
    execution_date: date,
    now: datetime,
) -> None:
    """Audit one release of an approved run's SEPA file (who took which money out)."""
    if not run.approved:
        raise Conflict(
            "this run is awaiting approval: its payout file is released once approved",
            code="settlement_run_not_approved",
        )
    await audit.record(
        conn,
        admin,
        "settlement.payouts.download",
        f"settlement_run:{run.business_date.isoformat()}",
        None,
        {
            "message_id": payouts.message_id,
            "payouts": len(payouts.payouts),
            "payout_cents": payouts.payout_cents,
            "execution_date": execution_date.isoformat(),
        },
        now,
    )
