"""Back-office pages: settlement runs and statements, running a settlement
with visible progress, approval, the SEPA payout file and CSV exports.

Roles: owner and finance run settlements, approve runs and take the SEPA
file and the payouts CSV (they hold IBANs); support reads runs and
statements (it answers partners' questions about them); marketing has no
business here. A run started by an admin is approved by another
(api/settlement/approval.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream

from api.admin_auth.principal import Role
from api.backoffice.csv_export import csv_response
from api.backoffice.guards import AdminSession, SignedInAdmin, form_text, require_csrf
from api.backoffice.listing import PAGE_SIZE, page_of
from api.backoffice.pages import base_context, page
from api.cursors import decode_cursor
from api.db.pool import transaction
from api.errors import Conflict, DomainError
from api.settlement import approval, jobs
from api.settlement.payouts import DebtorAccount, build_pain001, next_weekday, payouts_for_run
from api.settlement.periods import PERIODS, business_date
from api.settlement.statements import get_statement, statement_csv
from api.web.state import Runtime, runtime

SETTLEMENT_READ_ROLES: tuple[Role, ...] = ("owner", "finance", "support")
SETTLEMENT_WRITE_ROLES: tuple[Role, ...] = ("owner", "finance")
RECENT_JOBS_SHOWN = 5
CSV_BATCH_ROWS = 500
DATE_INPUT_CHARS_MAX = 10

# Settlement jobs run as tasks of this process; holding them here keeps the
# event loop from dropping a running task (it keeps only weak references).
_running: set[asyncio.Task[None]] = set()


def _day(value: str | None, label: str) -> date | None:
    if not value or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip()[:DATE_INPUT_CHARS_MAX])
    except ValueError:
        raise DomainError(
            f"{label} must be a date like 2026-11-24", code="invalid_date", status=400
        ) from None


def _text(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _context(who: AdminSession, **fields: Any) -> dict[str, Any]:
    return {
        **base_context(who, "settlement"),
        "can_write": who.admin.role in SETTLEMENT_WRITE_ROLES,
        **fields,
    }


@get("/settlement", opt={"roles": SETTLEMENT_READ_ROLES})
async def runs_list(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    status: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    rt = runtime(request.app.state)
    filters: dict[str, Any] = {
        "status": _text(status),
        "since": _day(since, "From"),
        "until": _day(until, "Until"),
    }
    before = decode_cursor(cursor, date.fromisoformat)[0] if cursor else None
    rows = await approval.list_runs(rt.db, limit=PAGE_SIZE + 1, before=before, **filters)
    listed = page_of(rows, lambda run: (run.business_date.isoformat(),))
    context = _context(
        who,
        runs=listed.items,
        next_cursor=listed.next_cursor,
        filters={key: "" if value is None else str(value) for key, value in filters.items()},
        statuses=approval.RUN_STATUSES,
        default_day=business_date(rt.clock.now()) - timedelta(days=1),
        jobs=await jobs.recent_jobs(rt.db, RECENT_JOBS_SHOWN),
        appending=cursor is not None,
        error=None,
    )
    fragment = "rows" if cursor is not None else "table"
    return page(request, "backoffice/settlement.html", context, fragment=fragment)


async def _run_rows(rt: Runtime, filters: dict[str, Any]) -> AsyncIterator[Sequence[object]]:
    before: date | None = None
    while True:
        rows = await approval.list_runs(rt.db, limit=CSV_BATCH_ROWS, before=before, **filters)
        for run in rows:
            yield (
                run.business_date.isoformat(),
                run.period_end.isoformat(),
                run.statements,
                run.entries,
                run.owed_to_partners_cents,
                run.owed_by_partners_cents,
                run.started_at.isoformat(),
                run.started_by_email or "",
                "approved" if run.approved else "awaiting_approval",
                run.approved_by_email or "",
                run.approved_at.isoformat() if run.approved_at else "",
            )
        if len(rows) < CSV_BATCH_ROWS:
            return
        before = rows[-1].business_date


@get("/settlement/export.csv", opt={"roles": SETTLEMENT_READ_ROLES})
async def runs_csv(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
) -> Stream:
    filters = {
        "status": _text(status),
        "since": _day(since, "From"),
        "until": _day(until, "Until"),
    }
    return csv_response(
        "settlement_runs.csv",
        [
            "business_date",
            "period_end",
            "statements",
            "entries",
            "owed_to_partners_cents",
            "owed_by_partners_cents",
            "started_at",
            "started_by",
            "status",
            "approved_by",
            "approved_at",
        ],
        _run_rows(runtime(request.app.state), filters),
    )


@post("/settlement/runs", opt={"roles": SETTLEMENT_WRITE_ROLES})
async def start_run(request: Request[Any, Any, Any], who: SignedInAdmin) -> Response[Any]:
    rt = runtime(request.app.state)
    form = await request.form()
    require_csrf(request, form, who)
    day = _day(form_text(form, "day"), "The day")
    if day is None:
        raise DomainError("choose the business day to settle", code="invalid_date", status=422)
    started = await jobs.start_job(rt.db, day, who.admin, rt.clock.now())
    if started.job is None:  # settled already: show the run
        assert started.run_id is not None
        return Redirect(f"/backoffice/settlement/runs/{started.run_id}", status_code=303)
    if started.created:
        task = asyncio.create_task(
            jobs.run_job(rt.db, started.job.id, who.admin.admin_id, rt.clock)
        )
        _running.add(task)
        task.add_done_callback(_running.discard)
    return Redirect(f"/backoffice/settlement/jobs/{started.job.id}", status_code=303)


@get("/settlement/jobs/{job_id:int}", opt={"roles": SETTLEMENT_READ_ROLES})
async def job_progress(
    request: Request[Any, Any, Any], who: SignedInAdmin, job_id: FromPath[int]
) -> Response[str]:
    rt = runtime(request.app.state)
    job = await jobs.get_job(rt.db, job_id)
    if job is None:
        raise DomainError("there is no such settlement job", code="job_not_found", status=404)
    run = None
    statements: list[approval.StatementRow] = []
    if job.status == "done":
        run_id = await approval.run_of_day(rt.db, job.business_date)
        if run_id is not None:
            run = await approval.get_run(rt.db, run_id)
            statements = await approval.list_statements(rt.db, limit=PAGE_SIZE, run_id=run_id)
    context = _context(who, job=job, run=run, statements=statements)
    return page(request, "backoffice/settlement_job.html", context, fragment="progress")


async def _run_page(
    request: Request[Any, Any, Any],
    who: AdminSession,
    run_id: int,
    *,
    notice: str | None = None,
    status: int = 200,
) -> Response[str]:
    rt = runtime(request.app.state)
    run = await approval.get_run(rt.db, run_id)
    rows = await approval.list_statements(rt.db, limit=PAGE_SIZE + 1, run_id=run_id)
    context = _context(
        who,
        run=run,
        statements=rows[:PAGE_SIZE],
        more_statements=len(rows) > PAGE_SIZE,
        payouts=await payouts_for_run(rt.db, run.business_date),
        is_starter=run.started_by_admin_id == who.admin.admin_id,
        payout_account=rt.settings.payout_iban is not None,
        notice=notice,
    )
    return page(request, "backoffice/settlement_run.html", context, status=status)


@get("/settlement/runs/{run_id:int}", opt={"roles": SETTLEMENT_READ_ROLES})
async def run_detail(
    request: Request[Any, Any, Any], who: SignedInAdmin, run_id: FromPath[int]
) -> Response[str]:
    return await _run_page(request, who, run_id)


@post("/settlement/runs/{run_id:int}/approve", opt={"roles": SETTLEMENT_WRITE_ROLES})
async def approve_run(
    request: Request[Any, Any, Any], who: SignedInAdmin, run_id: FromPath[int]
) -> Response[str]:
    rt = runtime(request.app.state)
    require_csrf(request, await request.form(), who)
    run = await approval.get_run(rt.db, run_id)
    payouts = await payouts_for_run(rt.db, run.business_date)
    await transaction(
        rt.db, lambda conn: approval.approve_run(conn, run_id, who.admin, payouts, rt.clock.now())
    )
    return await _run_page(
        request, who, run_id, notice="Approved: the payout file can be downloaded."
    )


@get("/settlement/runs/{run_id:int}/sepa.xml", opt={"roles": SETTLEMENT_WRITE_ROLES})
async def run_sepa(
    request: Request[Any, Any, Any], who: SignedInAdmin, run_id: FromPath[int]
) -> Response[bytes]:
    rt = runtime(request.app.state)
    settings = rt.settings
    run = await approval.get_run(rt.db, run_id)
    if not run.approved:
        raise Conflict(
            "this run is awaiting approval: its payout file is released once another"
            " admin of finance or the owner has approved it",
            code="settlement_run_not_approved",
        )
    if settings.payout_account_name is None or settings.payout_iban is None:
        raise Conflict(
            "the programme's bank account is not configured: set KRING_PAYOUT_ACCOUNT_NAME"
            " and KRING_PAYOUT_IBAN",
            code="payout_account_missing",
        )
    assert settings.payout_bic is not None  # settings derive it or refuse to start
    payouts = await payouts_for_run(rt.db, run.business_date)
    if not payouts.payouts:
        raise Conflict(
            "nothing to pay for this run: no partner is owed money, or every one is flagged",
            code="no_payouts",
        )
    debtor = DebtorAccount(settings.payout_account_name, settings.payout_iban, settings.payout_bic)
    execution_date = next_weekday(business_date(rt.clock.now()))
    xml = build_pain001(
        debtor, payouts.payouts, execution_date=execution_date, message_id=payouts.message_id
    )
    await transaction(
        rt.db,
        lambda conn: approval.record_payout_file(
            conn, run, who.admin, payouts, execution_date, rt.clock.now()
        ),
    )
    filename = f"kring-payouts-{run.business_date.isoformat()}.xml"
    return Response(
        xml,
        media_type="application/xml",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@get("/settlement/runs/{run_id:int}/payouts.csv", opt={"roles": SETTLEMENT_WRITE_ROLES})
async def run_payouts_csv(request: Request[Any, Any, Any], run_id: FromPath[int]) -> Stream:
    rt = runtime(request.app.state)
    run = await approval.get_run(rt.db, run_id)
    payouts = await payouts_for_run(rt.db, run.business_date)
    rows: list[Sequence[object]] = [
        (
            p.partner_code,
            p.partner_name,
            p.amount_cents,
            p.account_holder,
            p.iban,
            p.bic or "",
            p.end_to_end_id,
            "payout",
            "",
        )
        for p in payouts.payouts
    ]
    rows += [
        (f.partner_code, f.partner_name, f.amount_cents, "", "", "", "", "flagged", f.reason)
        for f in payouts.flagged
    ]
    return csv_response(
        "payouts.csv",
        [
            "partner_code",
            "partner_name",
            "amount_cents",
            "account_holder",
            "iban",
            "bic",
            "end_to_end_id",
            "status",
            "reason",
        ],
        rows,
    )


def _statement_filters(
    run: str | None, partner: str | None, period: str | None, since: str | None, until: str | None
) -> dict[str, Any]:
    run_id = None
    if run and run.strip():
        if not run.strip().isdigit():
            raise DomainError("run must be a run's number", code="invalid_run", status=400)
        run_id = int(run.strip())
    kind = _text(period)
    if kind is not None and kind not in PERIODS:
        raise DomainError(
            f"period must be one of {', '.join(PERIODS)}", code="invalid_period", status=400
        )
    return {
        "run_id": run_id,
        "partner_code": _text(partner),
        "period": kind,
        "since": _day(since, "From"),
        "until": _day(until, "Until"),
    }


@get("/settlement/statements", opt={"roles": SETTLEMENT_READ_ROLES})
async def statements_list(
    request: Request[Any, Any, Any],
    who: SignedInAdmin,
    run: FromQuery[str | None] = None,
    partner: FromQuery[str | None] = None,
    period: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Response[str]:
    rt = runtime(request.app.state)
    filters = _statement_filters(run, partner, period, since, until)
    after = None
    if cursor:
        day, code = decode_cursor(cursor, date.fromisoformat, str)
        after = (day, code)
    rows = await approval.list_statements(rt.db, limit=PAGE_SIZE + 1, after=after, **filters)
    listed = page_of(rows, lambda s: (s.business_date.isoformat(), s.partner_code))
    shown_filters = {
        "run": "" if filters["run_id"] is None else str(filters["run_id"]),
        "partner": filters["partner_code"] or "",
        "period": filters["period"] or "",
        "since": "" if filters["since"] is None else filters["since"].isoformat(),
        "until": "" if filters["until"] is None else filters["until"].isoformat(),
    }
    context = _context(
        who,
        statements=listed.items,
        next_cursor=listed.next_cursor,
        filters=shown_filters,
        periods=PERIODS,
        appending=cursor is not None,
    )
    fragment = "rows" if cursor is not None else "table"
    return page(request, "backoffice/settlement_statements.html", context, fragment=fragment)


async def _statement_rows(rt: Runtime, filters: dict[str, Any]) -> AsyncIterator[Sequence[object]]:
    after: tuple[date, str] | None = None
    while True:
        rows = await approval.list_statements(rt.db, limit=CSV_BATCH_ROWS, after=after, **filters)
        for s in rows:
            yield (
                s.id,
                s.business_date.isoformat(),
                s.partner_code,
                s.partner_name,
                s.period,
                s.period_start.isoformat(),
                s.period_end.isoformat(),
                s.entries,
                s.net_cents,
                s.closed_at.isoformat(),
            )
        if len(rows) < CSV_BATCH_ROWS:
            return
        after = (rows[-1].business_date, rows[-1].partner_code)


@get("/settlement/statements/export.csv", opt={"roles": SETTLEMENT_READ_ROLES})
async def statements_csv(
    request: Request[Any, Any, Any],
    run: FromQuery[str | None] = None,
    partner: FromQuery[str | None] = None,
    period: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
) -> Stream:
    filters = _statement_filters(run, partner, period, since, until)
    return csv_response(
        "statements.csv",
        [
            "statement_id",
            "business_date",
            "partner_code",
            "partner_name",
            "period",
            "period_start",
            "period_end",
            "entries",
            "net_cents",
            "closed_at",
        ],
        _statement_rows(runtime(request.app.state), filters),
    )


@get("/settlement/statements/{statement_id:int}", opt={"roles": SETTLEMENT_READ_ROLES})
async def statement_detail(
    request: Request[Any, Any, Any], who: SignedInAdmin, statement_id: FromPath[int]
) -> Response[str]:
    rt = runtime(request.app.state)
    key = await approval.statement_key(rt.db, statement_id)
    statement = await get_statement(rt.db, key["partner_id"], key["public_id"])
    if statement is None:
        raise DomainError("there is no such statement", code="statement_not_found", status=404)
    run_id = await rt.db.fetchval("SELECT run_id FROM statements WHERE id = $1", statement_id)
    context = _context(who, statement=statement, run_id=run_id)
    return page(request, "backoffice/settlement_statement.html", context)


@get(
    "/settlement/statements/{statement_id:int}/statement.csv", opt={"roles": SETTLEMENT_READ_ROLES}
)
async def statement_download(
    request: Request[Any, Any, Any], statement_id: FromPath[int]
) -> Stream:
    rt = runtime(request.app.state)
    key = await approval.statement_key(rt.db, statement_id)
    statement = await get_statement(rt.db, key["partner_id"], key["public_id"])
    if statement is None:
        raise DomainError("there is no such statement", code="statement_not_found", status=404)
    # The partner API's own CSV of this statement (lines, net, every entry),
    # byte for byte what the partner downloads, so both sides compare equal.
    return Stream(
        statement_csv(rt.db, statement),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{statement.csv_filename}"',
            "Cache-Control": "no-store",
        },
    )


HANDLERS: list[Any] = [
    runs_list,
    runs_csv,
    start_run,
    job_progress,
    run_detail,
    approve_run,
    run_sepa,
    run_payouts_csv,
    statements_list,
    statements_csv,
    statement_detail,
    statement_download,
]
