"""The job worker: the migrated queue schema is what pgqueuer expects, the
periodic jobs run on their own within seconds, several workers (and direct
runs racing them) apply each lot exactly once, and runs of one job never
overlap and stay at least one interval apart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from itertools import pairwise

import asyncpg
import msgspec
import pytest
from pgqueuer import AsyncpgDriver, Queries, QueueManager

from api.clock import add_months
from api.jobs import run_due_jobs, start_in_process
from api.jobs.housekeeping import JOB_LOG_RETENTION, prune_job_log
from tests.conftest import balances

INTERVAL_SECONDS = 1
WAIT_SECONDS_MAX = 15.0
MEMBERS = 12
EARNS_PER_MEMBER = 3


@pytest.fixture(scope="module")
def fast_settings(settings):
    return msgspec.structs.replace(settings, job_interval_seconds=INTERVAL_SECONDS)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS_MAX
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {WAIT_SECONDS_MAX} s: {what}")
        await asyncio.sleep(0.1)


async def test_migrations_install_the_queue_schema_pgqueuer_expects(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        plan = await queries.plan_upgrade()
        # Non-empty after a pgqueuer upgrade: put these in a new migration.
        assert plan.statements == (), "\n".join(plan.statements)
        await QueueManager(queries).verify_structure()
    finally:
        await conn.close()


async def test_worker_runs_the_periodic_jobs_on_its_own(
    make_partner, make_member, client_for, pool, clock, database_url, fast_settings
):
    creds = await make_partner(return_window_days=0)
    card = await make_member()
    worker = await start_in_process(database_url, fast_settings, clock)
    try:
        async with client_for(creds) as client:
            earn = await client.earn(card_number=card, amount_cents=10_000, currency="EUR")
            expires_at = add_months(clock.now(), 36)

            async def released() -> bool:
                return (await balances(pool, card))["available"] == 100

            await eventually(released, "pending points released")

            hold = await client.authorize(card_number=card, points=40, hold_minutes=15)
            clock.advance(timedelta(minutes=16))

            async def voided() -> bool:
                return (await client.get_transaction(hold.id)).status == "expired"

            await eventually(voided, "hold past its deadline voided")

        clock.set(expires_at)

        async def expired() -> bool:
            return (await balances(pool, card))["available"] == 0

        await eventually(expired, "points past expiry expired")
    finally:
        await worker.stop()
    assert not worker.running
    assert await balances(pool, card) == {"available": 0, "pending": 0, "held": 0, "debt": 0}
    status = await pool.fetchval("SELECT status FROM transactions WHERE id = $1", earn.id)
    assert status == "available"


async def make_due_lots(
    make_partner, make_member, client_for, clock
) -> tuple[dict[str, int], list[object]]:
    """Pending lots for MEMBERS fresh members, all due for release now."""
    creds = await make_partner(return_window_days=3)
    cards = [await make_member() for _ in range(MEMBERS)]
    earned: dict[str, int] = dict.fromkeys(cards, 0)
    lot_ids: list[object] = []
    async with client_for(creds) as client:
        for card in cards:
            for step in range(EARNS_PER_MEMBER):
                txn = await client.earn(
                    card_number=card, amount_cents=1_000 * (step + 1), currency="EUR"
                )
                earned[card] += txn.points
                lot_ids.append(txn.id)
    clock.advance(timedelta(days=3))
    return earned, lot_ids


async def assert_released_exactly_once(pool, earned: dict[str, int], lot_ids: list[object]) -> None:
    cards = list(earned)
    for card in cards:
        assert await balances(pool, card) == {
            "available": earned[card],
            "pending": 0,
            "held": 0,
            "debt": 0,
        }
    rows = await pool.fetch(
        "SELECT m.card_number, a.kind, sum(p.amount)::bigint AS moved"
        " FROM postings p JOIN journal_entries e ON e.id = p.entry_id"
        " JOIN accounts a ON a.id = p.account_id JOIN members m ON m.id = a.member_id"
        " WHERE e.kind = 'release' AND m.card_number = ANY($1::text[])"
        " GROUP BY m.card_number, a.kind",
        cards,
    )
    moved = {(r["card_number"], r["kind"]): r["moved"] for r in rows}
    assert len(moved) == 2 * len(cards)
    for card in cards:
        assert moved[(card, "member_available")] == earned[card]
        assert moved[(card, "member_pending")] == -earned[card]
    lots = await pool.fetch(
        "SELECT state, points_remaining, points_original FROM lots"
        " WHERE transaction_id = ANY($1::uuid[])",
        lot_ids,
    )
    assert len(lots) == len(lot_ids)
    assert all(lot["state"] == "available" for lot in lots)
    assert all(lot["points_remaining"] == lot["points_original"] for lot in lots)


async def test_two_workers_started_at_once_release_each_lot_exactly_once(
    make_partner, make_member, client_for, pool, clock, database_url, fast_settings
):
    earned, lot_ids = await make_due_lots(make_partner, make_member, client_for, clock)
    since: datetime = await pool.fetchval("SELECT now()")
    workers = await asyncio.gather(
        *(start_in_process(database_url, fast_settings, clock) for _ in range(2))
    )
    try:

        async def all_released() -> bool:
            pending = await pool.fetchval(
                "SELECT count(*) FROM lots WHERE transaction_id = ANY($1::uuid[])"
                " AND state = 'pending'",
                lot_ids,
            )
            return pending == 0

        await eventually(all_released, "all lots released")
        await asyncio.sleep(3 * INTERVAL_SECONDS)  # later runs find nothing left to move
    finally:
        await asyncio.gather(*(w.stop() for w in workers))

    await assert_released_exactly_once(pool, earned, lot_ids)
    runs = await pool.fetchval(
        "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'release_pending_points'"
        " AND status = 'successful' AND created > $1",
        since,
    )
    assert runs >= 2


async def test_direct_runs_racing_each_other_release_each_lot_exactly_once(
    make_partner, make_member, client_for, pool, clock
):
    earned, lot_ids = await make_due_lots(make_partner, make_member, client_for, clock)
    results = await asyncio.gather(*(run_due_jobs(pool, clock.now()) for _ in range(4)))
    assert sum(r.released.lots for r in results) == len(lot_ids)
    assert sum(r.released.points for r in results) == sum(earned.values())
    await assert_released_exactly_once(pool, earned, lot_ids)


async def test_runs_of_one_job_never_overlap_and_keep_their_interval(
    pool, clock, database_url, fast_settings
):
    since: datetime = await pool.fetchval("SELECT now()")
    workers = [await start_in_process(database_url, fast_settings, clock) for _ in range(3)]
    try:
        await asyncio.sleep(5 * INTERVAL_SECONDS)
    finally:
        await asyncio.gather(*(w.stop() for w in workers))

    picks: list[datetime] = [
        r["created"]
        for r in await pool.fetch(
            "SELECT created FROM pgqueuer_log WHERE entrypoint = 'release_pending_points'"
            " AND status = 'picked' AND created > $1 ORDER BY created",
            since,
        )
    ]
    # Three workers, five intervals: without the dedupe key this would be ~15.
    assert 2 <= len(picks) <= 6
    gaps = [later - earlier for earlier, later in pairwise(picks)]
    assert min(gaps) >= timedelta(seconds=INTERVAL_SECONDS)
    # The queue holds at most one run of each job, queued or running.
    per_job = await pool.fetch(
        "SELECT entrypoint, count(*) AS runs FROM pgqueuer"
        " WHERE status IN ('queued', 'picked') GROUP BY entrypoint"
    )
    assert all(r["runs"] == 1 for r in per_job)


async def test_prune_deletes_only_queue_log_rows_past_retention(pool):
    await pool.execute(
        "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint)"
        " VALUES (now() - $1::interval - interval '1 minute', 0, 'successful', 0, 'old'),"
        "        (now() - $1::interval + interval '1 minute', 0, 'successful', 0, 'recent')",
        JOB_LOG_RETENTION,
    )
    assert await prune_job_log(pool) >= 1
    left = {r["entrypoint"] for r in await pool.fetch("SELECT entrypoint FROM pgqueuer_log")}
    assert "old" not in left
    assert "recent" in left
    assert await prune_job_log(pool) == 0


async def test_the_worker_moves_challenge_progress_within_seconds_of_an_earn(
    make_partner, make_member, client_for, pool, clock, database_url, fast_settings
):
    creds = await make_partner()
    card = await make_member()
    now = clock.now()
    challenge = await pool.fetchval(
        "INSERT INTO challenges (name, kind, target, starts_at, ends_at, enrolment, audience,"
        " reward_points, created_at, updated_at)"
        " VALUES ('Twice', 'purchases', 2, $1, $2, 'automatic', 'everyone', 50, $1, $1)"
        " RETURNING id",
        now - timedelta(minutes=1),
        now + timedelta(days=7),
    )
    settings = msgspec.structs.replace(fast_settings, engagement_interval_seconds=1)
    worker = await start_in_process(database_url, settings, clock)
    try:
        async with client_for(creds) as client:
            for _ in range(2):
                await client.earn(card_number=card, amount_cents=1_000, currency="EUR")

        async def rewarded() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT rewarded FROM challenge_enrolments e JOIN members m"
                    " ON m.id = e.member_id WHERE e.challenge_id = $1 AND m.card_number = $2",
                    challenge,
                    card,
                )
            )

        await eventually(rewarded, "challenge met and rewarded by the worker")
    finally:
        await worker.stop()
    assert (await balances(pool, card))["available"] == 50
