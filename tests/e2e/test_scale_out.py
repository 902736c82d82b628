"""Scale-out: two API processes (`kring serve --workers 2 --no-jobs`) and two
`kring worker` processes on one PostgreSQL (this session's embedded server).
Requests are served by both API processes, the periodic jobs are shared by the
two workers without running anything twice, and the ledger checks clean."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import psutil

from api.coalition.partners import Credentials
from tests.conftest import JWT_SECRET
from tests.faults.cluster import KRING, Cluster

MEMBERS = 12
EARNS = 96  # 8 per member, 10 points each
BURNS = 48  # 4 per member, 5 points each: all fit once the earns are released
CONCURRENCY = 16
# The second process may still be starting when the first answers.
PROBE_SECONDS_MAX = 60
PROBE_CONNECTIONS_HELD_MAX = 200
ENV = {
    "KRING_JWT_SECRET": JWT_SECRET,
    "KRING_JOB_INTERVAL_SECONDS": "1",
    "KRING_LOG_LEVEL": "warning",
    "KRING_DB_POOL_MAX_SIZE": "10",
}


def served_by_each_process(cluster: Cluster) -> dict[int, int]:
    """Open connections one at a time and ask /health on each, until every
    API process has answered; returns answers per process.

    A keep-alive connection is served start to end by the process that
    accepted it, so the process holding the server side of the socket is
    the one that answered."""
    answered: dict[int, int] = {}
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + PROBE_SECONDS_MAX
        while time.monotonic() < deadline:
            if len(held) >= PROBE_CONNECTIONS_HELD_MAX:  # stay far below the open-files limit
                held.pop(0).close()
            sock = socket.create_connection(("127.0.0.1", cluster.port), timeout=5)
            held.append(sock)  # kept open, so the next connection is a new one
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: kring\r\n\r\n")
            reply = b""
            while b'"ok"' not in reply:
                chunk = sock.recv(4096)
                assert chunk, "connection closed before the answer"
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200")
            pid = cluster.which_api_process(sock)
            assert pid is not None
            answered[pid] = answered.get(pid, 0) + 1
            if len(answered) == cluster.api_workers:
                break
            # A process still starting accepts nothing yet; give it time.
            time.sleep(0.02)
    finally:
        for sock in held:
            sock.close()
    return answered


async def post(
    http: httpx.AsyncClient, token: str, path: str, body: dict[str, object]
) -> httpx.Response:
    key = str(uuid.uuid4())
    headers = {"authorization": f"Bearer {token}", "idempotency-key": key}
    return await http.post(path, json=body, headers=headers)


async def test_two_api_processes_and_two_job_workers_share_one_database(
    database_url: str,
    pool: asyncpg.Pool,
    make_partner: Callable[..., Awaitable[Credentials]],
    make_member: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    # Return window 0: every earn is pending until a job worker releases it.
    creds = await make_partner(code="scale-out", return_window_days=0)
    cards = [await make_member() for _ in range(MEMBERS)]
    cluster = Cluster(database_url, tmp_path / "kring", api_workers=2, job_workers=2, env=ENV)
    await asyncio.to_thread(cluster.start)
    try:
        answered = await asyncio.to_thread(served_by_each_process, cluster)
        assert sorted(answered) == cluster.api_pids(), answered

        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=f"{cluster.base_url}/partner/v1", limits=limits, timeout=30
        ) as http:
            token = (
                await http.post(
                    "/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": creds.client_id,
                        "client_secret": creds.client_secret,
                    },
                )
            ).json()["access_token"]
            gate = asyncio.Semaphore(CONCURRENCY)

            async def earn(card: str) -> httpx.Response:
                async with gate:
                    return await post(
                        http,
                        token,
                        "/earn",
                        {"card_number": card, "amount_cents": 1_000, "currency": "EUR"},
                    )

            earned = await asyncio.gather(*(earn(cards[i % MEMBERS]) for i in range(EARNS)))
            assert [r.status_code for r in earned] == [201] * EARNS
            assert {r.json()["status"] for r in earned} == {"pending"}

            # Both job workers pick up runs of release_pending_points.
            async def released() -> bool:
                return not await pool.fetchval("SELECT count(*) FROM lots WHERE state = 'pending'")

            for _ in range(300):
                if await released():
                    break
                await asyncio.sleep(0.1)
            assert await released(), "the job workers did not release the pending points"

            # An API process killed mid-run is replaced; the port keeps answering.
            before = cluster.api_pids()
            victim = cluster.kill_api_worker(0)
            for _ in range(150):
                now = cluster.api_pids()
                if len(now) == 2 and victim not in now:
                    break
                await asyncio.sleep(0.1)
            assert victim not in cluster.api_pids() and len(cluster.api_pids()) == 2, before

            async def burn(card: str) -> httpx.Response:
                async with gate:
                    return await post(http, token, "/burns", {"card_number": card, "points": 5})

            burned = await asyncio.gather(*(burn(cards[i % MEMBERS]) for i in range(BURNS)))
            assert [r.status_code for r in burned] == [201] * BURNS

        # Each member: 80 earned, 20 burned, nothing pending, nothing held.
        rows = await pool.fetch(
            "SELECT m.card_number, a.kind, a.balance FROM accounts a"
            " JOIN members m ON m.id = a.member_id WHERE m.card_number = ANY($1::text[])",
            cards,
        )
        got = {(r["card_number"], r["kind"]): r["balance"] for r in rows}
        for card in cards:
            assert got[(card, "member_available")] == 60
            assert got[(card, "member_pending")] == 0
            assert got[(card, "member_held")] == 0
        # Every lot was released exactly once: per member, the release entries
        # moved exactly the points earned (a lot released twice would add more).
        released_points = await pool.fetch(
            """
            SELECT a.member_id, sum(p.amount) AS points FROM postings p
            JOIN journal_entries e ON e.id = p.entry_id AND e.kind = 'release'
            JOIN accounts a ON a.id = p.account_id AND a.kind = 'member_available'
            JOIN members m ON m.id = a.member_id
            WHERE m.card_number = ANY($1::text[]) GROUP BY a.member_id
            """,
            cards,
        )
        assert sorted(r["points"] for r in released_points) == [80] * MEMBERS
        # One queue listener per `kring worker`; the API processes run no worker.
        listeners = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'kring-worker'"
        )
        assert listeners == 2
        assert all(w.poll() is None for w in cluster.workers)
        check = await asyncio.to_thread(
            subprocess.run,
            [KRING, "ledger", "check"],
            env=cluster.environ(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_serve_with_workers_runs_the_job_worker_once(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    cluster = Cluster(
        database_url,
        tmp_path / "kring",
        api_workers=3,
        job_workers=0,
        serve_runs_jobs=True,
        env=ENV,
    )
    try:
        await asyncio.to_thread(cluster.start)  # `serve --workers 3`, with its job worker
        children = cluster.api_pids()
        assert len(children) == 3
        listeners = 0
        for _ in range(100):  # the worker thread connects once the supervisor started it
            listeners = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'kring-worker'"
            )
            if listeners:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # and no other process adds one
        listeners = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'kring-worker'"
        )
        assert listeners == 1
    finally:
        await asyncio.to_thread(cluster.stop)
    assert cluster.serve.returncode == 0
    assert not any(psutil.pid_exists(pid) for pid in children)  # they went with it
