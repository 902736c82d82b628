"""Kring's performance suite: every benchmark behind one command, one table.

    uv run python -m tests.bench.suite                       # 10 s per row, 32 clients
    uv run python -m tests.bench.suite --duration 15 --clients 64 --markdown
    uv run python -m tests.bench.suite --history-entries 200000 --settle-entries 200000 --quick

Starts `kring serve` (with its job worker, as production runs it) on a fresh
data folder (embedded PostgreSQL, loopback only), creates a partner and
members, and bulk-loads members' long histories straight in SQL (earns of the
last 700 days: balanced journal entries, postings, transactions and lots,
balances summed from the postings, so `ledger check` stays clean) until the
database holds `--history-entries` (default 1,000,000) ledger entries. Then,
one after the other, each row gets the machine to itself:

- earn:       POST /partner/v1/earn, a fresh Idempotency-Key per request;
- burn:       POST /partner/v1/burns (authorize and capture in one step), 1 point;
- identify:   GET /partner/v1/members/{card}, the look-up a till does first;
- wallet:     GET / (the wallet home page) as members with ~500 entries each;
- settlement: `kring settle --period DAY` of a day holding `--settle-entries`
              entries, written by settle_bench.py's generator into a database
              of its own on the same server; p50/p99 do not apply;
- dashboard:  tests/bench/dashboard_bench.py if it exists (contract below).

HTTP rows are driven by `wrk` (--clients connections, a warm-up first);
memory is the peak RSS of the process doing the work (`kring serve`, or
`kring settle`), sampled every 0.2 s. pgbench tpcb-like runs on the same
PostgreSQL with the same client count before and after the rows; each row's
ratio is its throughput over the mean of the two (for settlement: entries/s
per pgbench TPS, as settle_bench.py prints it). Absolute figures move with
the machine; the ratio is what to compare.

Dashboard contract (subprocess + one JSON line): the suite runs

    <python> tests/bench/dashboard_bench.py --database-url URL --base-url URL
             --clients N --duration S

from the repository root, where URL is the suite's Kring database (with the
1,000,000 entries) and base URL its running `kring serve`; the script may
ignore options it does not need but must accept them. It prints whatever it
likes, and last a line holding one JSON object, either one row or
`{"rows": [row, ...]}`, each row

    {"name": "dashboard", "per_s": 123.4, "p50_ms": 8.1, "p99_ms": 20.3,
     "rss_mb": 110.0, "note": "..."}

(`p50_ms`, `p99_ms`, `rss_mb`, `note` may be null or left out). A non-zero
exit or no JSON line shows as a row with the error in its note.

Not a pytest test: it needs `wrk` and takes several minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
BENCH_DIR: Final = Path(__file__).resolve().parent
for _path in (REPO_ROOT, BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from api.clock import Clock  # noqa: E402
from api.db import migrate  # noqa: E402
from api.db.pool import create_pool  # noqa: E402
from api.db.sql import Query  # noqa: E402
from api.member_auth.guards import WALLET_SESSION_COOKIE  # noqa: E402
from api.member_auth.tokens import WALLET_AUDIENCE, issue_session_token  # noqa: E402
from tests.bench.earn_bench import (  # noqa: E402
    LUA_SCRIPT as EARN_LUA,
)
from tests.bench.earn_bench import (  # noqa: E402
    MB,
    BenchError,
    Postgres,
    RssSampler,
    Server,
    fetch_token_and_check,
    free_port,
    kring_command,
    last_json,
    run_kring,
    run_wrk,
)

DASHBOARD_SCRIPT: Final = BENCH_DIR / "dashboard_bench.py"
SETTLE_DATABASE: Final = "kring_settle_bench"
WALLET_MEMBERS: Final = 200  # members signed in to the wallet row
WALLET_SESSION_DAYS: Final = 1
HISTORY_DAYS: Final = 700  # inside the 36 months before expiry: no lot expires meanwhile
BURN_POINTS: Final = 1
SUBPROCESS_S_MAX: Final = 900.0

# wrk's summary line, shared by every script below (the earn script has its own).
_DONE_LUA: Final = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"status_ge_400":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""

_COMMON_LUA: Final = r"""
local threads = {}
local counter = 0
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + tid)
end
"""

_BURN_LUA: Final = r"""
local cards = {%(cards)s}
local token = "%(token)s"
local run = "%(run)s"
function request()
  counter = counter + 1
  local card = cards[math.random(#cards)]
  local body = string.format(
    '{"card_number":"%%s","points":%(points)d,"receipt_ref":"R%%d-%%d","store_id":"bench"}',
    card, tid, counter)
  return wrk.format("POST", "/partner/v1/burns", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    -- The warm-up runs this script too: the random part keeps its keys apart.
    ["Idempotency-Key"] = string.format("%%s-%%d-%%d-%%d", run, tid, counter,
                                        math.random(1, 1000000000)),
  }, body)
end
"""

_IDENTIFY_LUA: Final = r"""
local cards = {%(cards)s}
local token = "%(token)s"
function request()
  return wrk.format("GET", "/partner/v1/members/" .. cards[math.random(#cards)], {
    ["Authorization"] = "Bearer " .. token,
  })
end
"""

_WALLET_LUA: Final = r"""
local cookies = {%(cookies)s}
function request()
  -- wrk counts a 3xx as success: the suite checks beforehand that these
  -- cookies get the page (200), not the redirect to sign-in.
  return wrk.format("GET", "/", {["Cookie"] = cookies[math.random(#cookies)]})
end
"""

# Members' long histories, set-based (the API would take an hour for a
# million entries): earns spread over the last HISTORY_DAYS, already
# available, each a balanced entry (partner issued shard -, member available +)
# with its transaction and lot; then every touched balance is recomputed
# from the postings.
HISTORY: Final = [
    """
    CREATE UNLOGGED TABLE bench_history AS
    SELECT i, gen_random_uuid() AS txn_id, m.id AS member_id, p.id AS partner_id,
           p.issuance_price_micros AS price_micros, 20 + (i % 80) AS points,
           :now::timestamptz - interval '1 hour'
               - ((i::bigint * 7919) % (:days::bigint * 86400)) * interval '1 second' AS booked_at
    FROM generate_series(0, :entries::int - 1) i
    JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM members) m
        ON m.n = i % :members::int
    JOIN partners p ON p.id = :partner_id::bigint
    """,
    """
    INSERT INTO transactions (id, partner_id, member_id, kind, status, amount_cents, currency,
                              points, price_micros, occurred_at, created_at, available_at)
    SELECT txn_id, partner_id, member_id, 'earn', 'available', points * 100, 'EUR', points,
           price_micros, booked_at, booked_at, booked_at
    FROM bench_history
    """,
    """
    INSERT INTO journal_entries (kind, transaction_id, partner_id, member_id, price_micros,
                                 booked_at)
    SELECT 'earn', txn_id, partner_id, member_id, price_micros, booked_at
    FROM bench_history ORDER BY booked_at
    """,
    """
    INSERT INTO postings (entry_id, account_id, unit, amount)
    SELECT e.id, x.account_id, 'PTS', x.amount
    FROM bench_history b
    JOIN journal_entries e ON e.transaction_id = b.txn_id
    JOIN accounts issued ON issued.partner_id = b.partner_id
        AND issued.kind = 'partner_points_issued' AND issued.shard = b.i % 16
    JOIN accounts available ON available.member_id = b.member_id
        AND available.kind = 'member_available'
    CROSS JOIN LATERAL (VALUES (issued.id, -b.points), (available.id, b.points))
        AS x(account_id, amount)
    """,
    """
    INSERT INTO lots (member_id, transaction_id, state, points_original, points_remaining,
                      available_at, expires_at, price_micros)
    SELECT member_id, txn_id, 'available', points, points, booked_at,
           booked_at + interval '36 months', price_micros
    FROM bench_history
    """,
    """
    UPDATE accounts a SET balance = s.total
    FROM (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) s
    WHERE a.id = s.account_id AND a.balance <> s.total
    """,
    "DROP TABLE bench_history",
    "VACUUM ANALYZE",
]


@dataclass
class Row:
    name: str
    per_s: float | None = None
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    rss_mb: float | None = None
    non_2xx: int | None = None
    ratio: float | None = None
    note: str = ""


@dataclass
class Setup:
    server: Server
    env: dict[str, str]
    url: str
    pg: Postgres
    creds: dict[str, str]
    cards: list[str]
    token: str
    work_dir: Path


# --- loading -----------------------------------------------------------------


async def _partner_id(url: str, client_id: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT partner_id FROM partner_credentials WHERE client_id = $1", client_id
            )
        )
    finally:
        await conn.close()


async def load_history(url: str, partner_id: int, entries_total: int) -> tuple[int, float]:
    """Add earns until the database holds `entries_total` journal entries;
    (entries now, seconds taken)."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        have = int(await conn.fetchval("SELECT count(*) FROM journal_entries"))
        members = int(await conn.fetchval("SELECT count(*) FROM members"))
        values = {
            "now": Clock().now(),
            "days": HISTORY_DAYS,
            "entries": max(0, entries_total - have),
            "members": members,
            "partner_id": partner_id,
        }
        if values["entries"]:
            for statement in HISTORY:
                query = Query(statement)
                await conn.execute(query.text, *query.args(values))
        total = int(await conn.fetchval("SELECT count(*) FROM journal_entries"))
        return total, time.perf_counter() - started
    finally:
        await conn.close()


async def wallet_cookies(url: str, secret: str, count: int) -> list[str]:
    """Session cookies of `count` members with the longest histories, minted
    as the sign-in would (a member_sessions row and its JWT)."""
    now = Clock().now()
    expires_at = now + timedelta(days=WALLET_SESSION_DAYS)
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """
            INSERT INTO member_sessions (member_id, kind, created_at, expires_at)
            SELECT m.id, 'wallet', $1, $2
            FROM members m
            JOIN (SELECT member_id, count(*) AS n FROM transactions GROUP BY member_id) t
                ON t.member_id = m.id
            ORDER BY t.n DESC, m.id LIMIT $3
            RETURNING id, (SELECT public_id FROM members WHERE id = member_id) AS public_id
            """,
            now,
            expires_at,
            count,
        )
    finally:
        await conn.close()
    return [
        WALLET_SESSION_COOKIE
        + "="
        + issue_session_token(
            r["id"],
            r["public_id"],
            audience=WALLET_AUDIENCE,
            secret=secret,
            now=now,
            expires_at=expires_at,
        )
        for r in rows
    ]


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


# --- rows --------------------------------------------------------------------


def _lua(path: Path, template: str, **values: Any) -> Path:
    path.write_text(_COMMON_LUA + (template % values) + _DONE_LUA)
    return path


def _cards_lua(cards: list[str]) -> str:
    return ",".join(json.dumps(c) for c in cards)


def http_row(name: str, setup: Setup, script: Path, args: argparse.Namespace, path: str) -> Row:
    if args.warmup > 0:
        run_wrk(setup.server.base_url, script, args.clients, args.warmup)
    print(f"  {name}: wrk {args.duration} s ...", file=sys.stderr, flush=True)
    with RssSampler(setup.server) as rss:
        wrk = run_wrk(setup.server.base_url, script, args.clients, args.duration)
    row = Row(
        name=name,
        per_s=wrk["requests"] / (wrk["duration_us"] / 1e6),
        p50_ms=wrk["p50_us"] / 1000,
        p99_ms=wrk["p99_us"] / 1000,
        rss_mb=rss.peak_bytes / MB,
        non_2xx=int(wrk["status_ge_400"]),
    )
    errors = wrk["connect_errors"] + wrk["read_errors"] + wrk["write_errors"] + wrk["timeouts"]
    notes = [path]
    if row.non_2xx:
        notes.append(f"{row.non_2xx} answers not 2xx/3xx")
    if errors:
        notes.append(f"{errors} socket errors")
    row.note = "; ".join(notes)
    return row


def earn_row(setup: Setup, args: argparse.Namespace) -> Row:
    script = setup.work_dir / "earn.lua"
    script.write_text(
        EARN_LUA
        % {"cards": _cards_lua(setup.cards), "token": setup.token, "run": uuid.uuid4().hex[:12]}
    )
    return http_row("earn", setup, script, args, "POST /partner/v1/earn")


def burn_row(setup: Setup, args: argparse.Namespace) -> Row:
    script = _lua(
        setup.work_dir / "burn.lua",
        _BURN_LUA,
        cards=_cards_lua(setup.cards),
        token=setup.token,
        run=uuid.uuid4().hex[:12],
        points=BURN_POINTS,
    )
    return http_row("burn", setup, script, args, "POST /partner/v1/burns")


def identify_row(setup: Setup, args: argparse.Namespace) -> Row:
    script = _lua(
        setup.work_dir / "identify.lua",
        _IDENTIFY_LUA,
        cards=_cards_lua(setup.cards),
        token=setup.token,
    )
    return http_row("identify", setup, script, args, "GET /partner/v1/members/{card}")


def wallet_row(setup: Setup, args: argparse.Namespace) -> Row:
    secret = setup.env["KRING_JWT_SECRET"]
    cookies = asyncio.run(wallet_cookies(setup.url, secret, WALLET_MEMBERS))
    if not cookies:
        raise BenchError("no member to sign in to the wallet")
    # wrk would count the redirect to sign-in as a success: prove the page first.
    name, value = cookies[0].split("=", 1)
    probe = httpx.get(setup.server.base_url + "/", cookies={name: value}, timeout=30)
    if probe.status_code != 200 or "sign-in" in str(probe.url):
        raise BenchError(f"the wallet home answered {probe.status_code}, not the page")
    script = _lua(
        setup.work_dir / "wallet.lua",
        _WALLET_LUA,
        cookies=",".join(json.dumps(c) for c in cookies),
    )
    entries = asyncio.run(_entries_per_member(setup.url))
    row = http_row("wallet home", setup, script, args, "GET /")
    row.note += f"; {len(cookies)} members, {entries:,} entries each"
    return row


async def _entries_per_member(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT max(n) FROM (SELECT count(*) AS n FROM journal_entries"
                " GROUP BY member_id) s"
            )
        )
    finally:
        await conn.close()


def settlement_row(setup: Setup, args: argparse.Namespace) -> Row:
    from tests.bench.settle_bench import DAY
    from tests.bench.settle_bench import generate as generate_day

    url = with_database(setup.url, SETTLE_DATABASE)
    created = setup.pg.run("createdb", SETTLE_DATABASE)
    if created.returncode != 0:
        raise BenchError(f"createdb {SETTLE_DATABASE} failed:\n{created.stderr}")
    migrate.upgrade(url)

    async def load() -> int:
        pool = await create_pool(url, min_size=1, max_size=4)
        try:
            await generate_day(pool, args.settle_entries, args.settle_partners)
            return int(await pool.fetchval("SELECT count(*) FROM journal_entries"))
        finally:
            await pool.close()

    print(f"  settlement: writing {args.settle_entries:,} entries ...", file=sys.stderr, flush=True)
    entries = asyncio.run(load())
    env = {**setup.env, "DATABASE_URL": url}
    print("  settlement: kring settle ...", file=sys.stderr, flush=True)
    first_s, peak_mb, out = _timed_kring(["settle", "--period", DAY.isoformat()], env)
    if "settled," not in out:
        raise BenchError(f"kring settle did not settle: {out}")
    # The re-run changes nothing: its time is the process start and the check.
    again_s, _, again = _timed_kring(["settle", "--period", DAY.isoformat()], env)
    if "already settled" not in again:
        raise BenchError(f"the re-run settled again: {again}")
    settle_s = max(first_s - again_s, 1e-3)
    return Row(
        name="settlement",
        per_s=entries / settle_s,
        unit="entries/s",
        rss_mb=peak_mb,
        note=(
            f"`kring settle` of one day, {entries:,} entries in {settle_s:.1f} s"
            f" (process start, {again_s:.1f} s, taken off); ratio: entries/s per TPS"
        ),
    )


def _timed_kring(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of one `kring` command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*kring_command(), *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
        if time.perf_counter() - started > SUBPROCESS_S_MAX:
            process.kill()
            raise BenchError(f"kring {' '.join(args)} took too long")
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise BenchError(f"kring {' '.join(args)} failed:\n{stderr[-2000:]}")
    return elapsed, peak / MB, stdout


def dashboard_rows(setup: Setup, args: argparse.Namespace) -> list[Row]:
    if not DASHBOARD_SCRIPT.exists():
        return [Row(name="dashboard", note="not yet built")]
    print("  dashboard: dashboard_bench.py ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        [
            sys.executable,
            str(DASHBOARD_SCRIPT),
            "--database-url",
            setup.url,
            "--base-url",
            setup.server.base_url,
            "--clients",
            str(args.clients),
            "--duration",
            str(args.duration),
        ],
        env=setup.env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_S_MAX,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return [Row(name="dashboard", note=f"failed ({done.returncode}): {tail[0]}")]
    try:
        found = last_json(done.stdout)
    except (BenchError, json.JSONDecodeError) as exc:
        return [Row(name="dashboard", note=f"no JSON line: {exc}".splitlines()[0])]
    raw = found.get("rows", [found]) if isinstance(found, dict) else []
    rows = []
    for item in raw:
        rows.append(
            Row(
                name=str(item.get("name") or "dashboard"),
                per_s=_number(item.get("per_s")),
                p50_ms=_number(item.get("p50_ms")),
                p99_ms=_number(item.get("p99_ms")),
                rss_mb=_number(item.get("rss_mb")),
                note=str(item.get("note") or ""),
            )
        )
    return rows or [Row(name="dashboard", note="dashboard_bench.py printed no row")]


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# --- table -------------------------------------------------------------------

COLUMNS: Final = [
    "row",
    "throughput",
    "unit",
    "p50 ms",
    "p99 ms",
    "peak RSS MB",
    "pgbench TPS",
    "ratio",
    "note",
]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def cells(row: Row, tps: float | None) -> list[str]:
    return [
        row.name,
        _fmt(row.per_s, ",.0f"),
        row.unit if row.per_s is not None else "",
        _fmt(row.p50_ms, ".1f"),
        _fmt(row.p99_ms, ".1f"),
        _fmt(row.rss_mb, ".0f"),
        _fmt(tps, ",.0f"),
        _fmt(row.ratio, ".2f"),
        row.note,
    ]


def render_text(rows: list[Row], tps: float | None) -> str:
    table = [COLUMNS, *(cells(r, tps) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    lines = []
    for line in table:
        first = [line[0].ljust(widths[0]), line[1].rjust(widths[1]), line[2].ljust(widths[2])]
        rest = [line[i].rjust(widths[i]) for i in range(3, len(COLUMNS) - 1)]
        lines.append("  ".join([*first, *rest, line[-1]]))
    return "\n".join(lines)


def render_markdown(rows: list[Row], tps: float | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r, tps)) + " |")
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------

ROWS: Final = ("earn", "burn", "identify", "wallet", "settlement", "dashboard")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per row and pgbench")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured load first")
    parser.add_argument("--clients", type=int, default=32, help="connections per HTTP row")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument(
        "--history-entries",
        type=int,
        default=1_000_000,
        help="ledger entries in the database before the rows run",
    )
    parser.add_argument("--settle-entries", type=int, default=1_000_000)
    parser.add_argument("--settle-partners", type=int, default=20)
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", dest="json_path", type=Path, help="also write the rows here")
    parser.add_argument(
        "--no-jobs", action="store_true", help="serve without the in-process job worker"
    )
    parser.add_argument(
        "--ledger-check", action="store_true", help="run `kring ledger check` at the end"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(args.rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    if args.clients < 1 or args.duration < 1:
        parser.error("--clients and --duration must be positive")
    return args


def prepare(server: Server, env: dict[str, str], data_dir: Path, args: argparse.Namespace) -> Setup:
    creds = last_json(
        run_kring(
            [
                "partner",
                "create",
                "--code",
                f"bench-{uuid.uuid4().hex[:8]}",
                "--name",
                "Bench shop",
                "--kind",
                "shop",
                "--json",
            ],
            env,
        )
    )
    cards = last_json(run_kring(["member", "create", "--count", str(args.members), "--json"], env))
    if not cards:
        raise BenchError("kring member create returned no cards")
    url = run_kring(["db", "url"], env).strip().splitlines()[-1]
    pg = Postgres.from_url(url)
    token = asyncio.run(
        fetch_token_and_check(server.base_url, creds["client_id"], creds["client_secret"], cards[0])
    )
    if args.history_entries:
        print(
            f"  loading history up to {args.history_entries:,} entries ...",
            file=sys.stderr,
            flush=True,
        )
        partner_id = asyncio.run(_partner_id(url, creds["client_id"]))
        total, took_s = asyncio.run(load_history(url, partner_id, args.history_entries))
        print(f"  {total:,} entries in the database ({took_s:.0f} s)", file=sys.stderr)
    pg.init_pgbench("pgbench", 1)
    return Setup(server, env, url, pg, creds, cards, token, data_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("suite: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="kring-suite-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KRING_MODE")}
    # A known secret, so the suite can mint wallet session cookies.
    env.update(
        KRING_DATA_DIR=str(data_dir),
        KRING_LOG_LEVEL="warning",
        KRING_JWT_SECRET=uuid.uuid4().hex + uuid.uuid4().hex,
    )
    server: Server | None = None
    failed = False
    try:
        server = Server(env, data_dir, free_port(), ["--no-jobs"] if args.no_jobs else [])
        print(f"kring serve on {server.base_url}, data in {data_dir}", file=sys.stderr, flush=True)
        server.wait_ready()
        setup = prepare(server, env, data_dir, args)
        print("  pgbench (before) ...", file=sys.stderr, flush=True)
        tps_runs = [setup.pg.pgbench("pgbench", args.clients, args.duration)]
        rows: list[Row] = []
        makers = {
            "earn": earn_row,
            "burn": burn_row,
            "identify": identify_row,
            "wallet": wallet_row,
            "settlement": settlement_row,
        }
        for name in args.rows:
            try:
                if name == "dashboard":
                    rows.extend(dashboard_rows(setup, args))
                else:
                    rows.append(makers[name](setup, args))
            except (BenchError, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
                failed = True
                rows.append(Row(name=name, note=f"failed: {str(exc).splitlines()[0]}"))
        print("  pgbench (after) ...", file=sys.stderr, flush=True)
        tps_runs.append(setup.pg.pgbench("pgbench", args.clients, args.duration))
        tps = statistics.mean(tps_runs)
        for row in rows:
            if row.per_s is not None:
                row.ratio = row.per_s / tps
        header = (
            f"Kring performance suite, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"{args.clients} clients, {args.duration} s per row (+{args.warmup} s warm-up), "
            f"{os.cpu_count()} CPUs, PostgreSQL {setup.pg.version()}, "
            f"{args.members:,} members, {args.history_entries:,} ledger entries loaded; "
            f"pgbench tpcb-like -s 1 before/after: "
            + " / ".join(f"{t:,.0f}" for t in tps_runs)
            + " TPS"
        )
        print(header)
        print()
        print(render_markdown(rows, tps) if args.markdown else render_text(rows, tps))
        if args.ledger_check:
            print(run_kring(["ledger", "check"], env).strip())
        if args.json_path:
            args.json_path.write_text(
                json.dumps(
                    {"header": header, "pgbench_tps": tps_runs, "rows": [asdict(r) for r in rows]},
                    indent=2,
                )
            )
    except (BenchError, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
        print(f"suite: {exc}", file=sys.stderr)
        if server is not None:
            print(server.log_tail(), file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        failed = True
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"data kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
