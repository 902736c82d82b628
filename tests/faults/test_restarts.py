"""While PostgreSQL is down the API answers 503 `database_unavailable`
(problem+json, Retry-After), not 500.

Regression: an API process that starts while PostgreSQL is down waits for
it. Before, its pool failed at start, and uvicorn's supervisor, seeing a
process fail to start, stopped the whole `serve --workers N` (found by the
bank fault test: a process replaced during crash recovery took the service
down for good)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.db import migrate
from api.db.embedded import EmbeddedServer, ensure_database
from tests.faults.cluster import Cluster, start_postgres, stop_postgres, stop_postgres_if_running

DOWN_SECONDS = 4.0


@pytest.fixture
def own_server() -> Iterator[tuple[EmbeddedServer, str]]:
    # Its own server: this test stops and starts it.
    root = Path(tempfile.mkdtemp(prefix="kr"))
    server = EmbeddedServer(root / "pg")
    try:
        asyncio.run(ensure_database(server.admin_url, "kring"))
        url = server.url_for("kring")
        migrate.upgrade(url)
        yield server, url
    finally:
        server.stop()
        stop_postgres_if_running(server.pgdata)
        shutil.rmtree(root, ignore_errors=True)


def test_a_process_replaced_while_postgresql_is_down_waits_for_it(
    own_server: tuple[EmbeddedServer, str],
) -> None:
    server, url = own_server
    cluster = Cluster(url, server.pgdata.parent / "kring", api_workers=2, job_workers=0)
    cluster.env = {"KRING_JWT_SECRET": "r" * 40, "KRING_LOG_LEVEL": "warning"}
    cluster.start()
    try:
        stop_postgres(server.pgdata)
        # Meanwhile the API says what is wrong, and when to try again.
        down = httpx.get(f"{cluster.base_url}/health", timeout=10)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/problem+json")
        assert down.json()["code"] == "database_unavailable"
        assert down.headers["retry-after"] == "1"
        victim = cluster.kill_api_worker(0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = cluster.api_pids()
            if victim not in pids and len(pids) == 2:
                break
            time.sleep(0.1)
        time.sleep(DOWN_SECONDS)  # the replacement is starting against no database
        assert cluster.serve is not None and cluster.serve.poll() is None, cluster.read_log("serve")
        start_postgres(server.pgdata, url)
        cluster.wait_healthy(60)
        # Both processes answer from the database again (fresh connections).
        for _ in range(20):
            assert httpx.get(f"{cluster.base_url}/health", timeout=10).status_code == 200
        assert cluster.serve.poll() is None
    finally:
        cluster.stop()
