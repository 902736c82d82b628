"""Settlement benchmark: close one business day holding 1,000,000 ledger entries.

    uv run python tests/bench/settle_bench.py [--entries 1000000] [--partners 20] [--keep]

Starts an embedded PostgreSQL in a fresh folder, migrates it, and writes one
business day of ledger history straight in SQL (the API would need minutes
to book a million entries): 20 partners, 50,000 members, earns (one entry
each) and one-step burns (an authorize and a capture entry each, holding
lots), all balanced and consistent with the lots, so `ledger check` passes.
Then it times `settle_day` for that day, times a re-run (which must change
nothing), optionally runs `ledger check`, and runs `pgbench` (TPC-B-like) on
the same server for a reference figure: settled entries per second per
pgbench transaction per second holds better across machines than seconds.

Not a pytest test (no `test_` prefix). Target: under 30 s for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import asyncpg
import psutil

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
for path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from earn_bench import Postgres  # noqa: E402

from api.coalition.partners import NewPartner, create_partner  # noqa: E402
from api.db import migrate  # noqa: E402
from api.db.embedded import start_embedded  # noqa: E402
from api.db.pool import create_pool, transaction  # noqa: E402
from api.db.sql import Query  # noqa: E402
from api.ledger.check import check_ledger  # noqa: E402
from api.settlement.periods import day_end, local_midnight  # noqa: E402
from api.settlement.run import settle_day  # noqa: E402

SETTLE_S_MAX: Final = 30.0
DAY: Final = date(2026, 11, 24)
MEMBERS: Final = 50_000
BURN_SHARE: Final = 0.15  # of transactions; each burn is two entries
BURN_POINTS: Final = 5
PGBENCH_CLIENTS: Final = 8
PGBENCH_SECONDS: Final = 10
MB: Final = 1024 * 1024

# One day of history, written set-based; `:spacing_s` spreads bookings over the day.
GENERATE: Final = [
    """
    INSERT INTO members (card_number, created_at)
    SELECT '6048' || lpad(i::text, 12, '0'), :day_start::timestamptz - interval '1 day'
    FROM generate_series(1, :members::int) i
    """,
    """
    INSERT INTO accounts (kind, unit, member_id)
    SELECT k, 'PTS', m.id
    FROM members m,
         unnest(ARRAY['member_available', 'member_pending', 'member_held', 'member_debt']) k
    """,
    """
    CREATE UNLOGGED TABLE bench_earns AS
    SELECT i, gen_random_uuid() AS txn_id,
           (SELECT min(id) FROM members) + (i % :members::int) AS member_id,
           p.id AS partner_id, p.issuance_price_micros AS price_micros,
           20 + (i % 80) AS points,
           :day_start::timestamptz + (i * :spacing_s::float8) * interval '1 second' AS booked_at
    FROM generate_series(0, :earns::int - 1) i
    JOIN (SELECT id, issuance_price_micros, row_number() OVER (ORDER BY id) - 1 AS n
          FROM partners) p ON p.n = i % (SELECT count(*) FROM partners)
    """,
    """
    INSERT INTO transactions (id, partner_id, member_id, kind, status, amount_cents, currency,
                              points, price_micros, occurred_at, created_at, available_at)
    SELECT txn_id, partner_id, member_id, 'earn', 'available', points * 100, 'EUR', points,
           price_micros, booked_at, booked_at, booked_at
    FROM bench_earns
    """,
    """
    INSERT INTO journal_entries (kind, transaction_id, partner_id, member_id, price_micros,
                                 booked_at)
    SELECT 'earn', txn_id, partner_id, member_id, price_micros, booked_at
    FROM bench_earns ORDER BY i
    """,
    """
    INSERT INTO postings (entry_id, account_id, unit, amount)
    SELECT e.id, x.account_id, 'PTS', x.amount
    FROM bench_earns b
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
    FROM bench_earns
    """,
    """
    CREATE UNLOGGED TABLE bench_burns AS
    SELECT j, gen_random_uuid() AS txn_id,
           (SELECT min(id) FROM members) + (j % :members::int) AS member_id,
           p.id AS partner_id, p.redemption_price_micros AS price_micros,
           :day_start::timestamptz + interval '12 hours' + (j * :spacing_s::float8) * interval '1 second'
               AS booked_at
    FROM generate_series(0, :burns::int - 1) j
    JOIN (SELECT id, redemption_price_micros, row_number() OVER (ORDER BY id) - 1 AS n
          FROM partners) p ON p.n = (j * 7) % (SELECT count(*) FROM partners)
    """,
    """
    INSERT INTO transactions (id, partner_id, member_id, kind, status, points, points_captured,
                              price_micros, occurred_at, created_at, hold_expires_at, finished_at)
    SELECT txn_id, partner_id, member_id, 'burn', 'captured', 5, 5, price_micros, booked_at,
           booked_at, booked_at + interval '30 minutes', booked_at + interval '1 second'
    FROM bench_burns
    """,
    """
    INSERT INTO hold_lots (transaction_id, lot_id, points)
    SELECT b.txn_id, first_lot.id, 5
    FROM bench_burns b
    JOIN (SELECT DISTINCT ON (member_id) member_id, id FROM lots
          ORDER BY member_id, expires_at, id) first_lot ON first_lot.member_id = b.member_id
    """,
    """
    UPDATE lots l SET points_remaining = l.points_remaining - taken.points
    FROM (SELECT lot_id, sum(points) AS points FROM hold_lots GROUP BY lot_id) taken
    WHERE l.id = taken.lot_id
    """,
    """
    INSERT INTO journal_entries (kind, transaction_id, partner_id, member_id, price_micros,
                                 booked_at)
    SELECT k.kind, b.txn_id, b.partner_id, b.member_id, b.price_micros,
           b.booked_at + k.later * interval '1 second'
    FROM bench_burns b, (VALUES ('authorize', 0), ('capture', 1)) AS k(kind, later)
    ORDER BY b.j, k.later
    """,
    """
    INSERT INTO postings (entry_id, account_id, unit, amount)
    SELECT e.id, x.account_id, 'PTS', x.amount
    FROM bench_burns b
    JOIN journal_entries e ON e.transaction_id = b.txn_id
    JOIN accounts available ON available.member_id = b.member_id
        AND available.kind = 'member_available'
    JOIN accounts held ON held.member_id = b.member_id AND held.kind = 'member_held'
    JOIN accounts redeemed ON redeemed.partner_id = b.partner_id
        AND redeemed.kind = 'partner_points_redeemed' AND redeemed.shard = b.j % 16
    CROSS JOIN LATERAL (
        SELECT * FROM (VALUES ('authorize', available.id, -5), ('authorize', held.id, 5),
                              ('capture', held.id, -5), ('capture', redeemed.id, 5))
            AS v(kind, account_id, amount)
        WHERE v.kind = e.kind
    ) x
    """,
    """
    UPDATE accounts a SET balance = s.total
    FROM (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) s
    WHERE a.id = s.account_id
    """,
    "DROP TABLE bench_earns, bench_burns",
    "ANALYZE",
]


async def generate(pool: asyncpg.Pool, entries: int, partners: int) -> None:
    now = local_midnight(DAY) - timedelta(days=1)

    async def make_partners(conn: asyncpg.Connection) -> None:
        for n in range(partners):
            new = NewPartner(
                code=f"bench-{n:02d}",
                name=f"Bench partner {n}",
                kind="shop",
                issuance_price_micros=9_000 + 250 * n,
                redemption_price_micros=8_000,
            )
            await create_partner(conn, new, now=now)

    await transaction(pool, make_partners)
    burns = int(entries * BURN_SHARE / (1 + BURN_SHARE))
    earns = entries - 2 * burns
    spacing_s = 11 * 3600 / max(earns, burns)  # earns in the morning, burns after noon
    values = {
        "day_start": local_midnight(DAY),
        "members": MEMBERS,
        "earns": earns,
        "burns": burns,
        "spacing_s": spacing_s,
    }
    async with pool.acquire() as conn:
        for statement in GENERATE:
            query = Query(statement)
            await conn.execute(query.text, *query.args(values))


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


def postgres_rss_mb() -> float:
    total = 0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):  # a backend may exit meanwhile
                total += process.memory_info().rss
    return total / MB


async def bench(args: argparse.Namespace, url: str) -> int:
    pool = await create_pool(url, min_size=1, max_size=4)
    me = psutil.Process()
    try:
        started = time.perf_counter()
        await generate(pool, args.entries, args.partners)
        generated_s = time.perf_counter() - started
        count = await pool.fetchval("SELECT count(*) FROM journal_entries")
        print(f"generated {count:,} entries in {generated_s:.1f} s", file=sys.stderr)

        now = day_end(DAY) + timedelta(hours=1)
        rss_before = rss_mb(me)
        started = time.perf_counter()
        result = await settle_day(pool, DAY, now)
        settle_s = time.perf_counter() - started
        rss_after = rss_mb(me)
        pg_rss = postgres_rss_mb()
        started = time.perf_counter()
        again = await settle_day(pool, DAY, now)
        rerun_s = time.perf_counter() - started
        if again.created or not result.created:
            print("FAIL: the re-run settled again", file=sys.stderr)
            return 1
        settled = await pool.fetchval("SELECT count(*) FROM settled_entries")
        check_s = None
        violations = []
        if args.check:
            started = time.perf_counter()
            async with pool.acquire() as conn:
                violations = await check_ledger(conn)
            check_s = time.perf_counter() - started
    finally:
        await pool.close()

    postgres = Postgres.from_url(url)
    postgres.init_pgbench("pgbench", 10)
    tps = postgres.pgbench("pgbench", PGBENCH_CLIENTS, PGBENCH_SECONDS)

    rows_per_s = result.entries / settle_s
    print()
    print(
        f"settle one day: {result.entries:,} entries, {result.statements} statements "
        f"({args.partners} partners + the programme's)"
    )
    print(
        f"{'settle s':>9} {'entries/s':>11} {'re-run s':>9} {'py RSS MB':>10} "
        f"{'py RSS +MB':>11} {'PG RSS MB*':>10} {'pgbench TPS':>12} {'entries/s per TPS':>18}"
    )
    print(
        f"{settle_s:>9.1f} {rows_per_s:>11,.0f} {rerun_s:>9.3f} {rss_after:>10.1f} "
        f"{rss_after - rss_before:>11.1f} {pg_rss:>10.1f} {tps:>12,.0f} {rows_per_s / tps:>18.1f}"
    )
    print("* summed over PostgreSQL's processes, so shared buffers count more than once")
    if check_s is not None:
        print(f"ledger check: {'clean' if not violations else 'FAILED'} in {check_s:.1f} s")
        for violation in violations:
            print(violation.describe())
    ok = settle_s < SETTLE_S_MAX and settled >= result.entries and not violations
    print(
        f"target: settle < {SETTLE_S_MAX:.0f} s: {'met' if settle_s < SETTLE_S_MAX else 'MISSED'}"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip `ledger check` after the run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="kring-settle-bench-"))
    server, url = start_embedded(folder)
    try:
        migrate.upgrade(url)
        return asyncio.run(bench(args, url))
    finally:
        server.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"data kept in {folder}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
