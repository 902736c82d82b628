"""`kring serve --workers N`: N API processes behind one port, one job worker.

Uvicorn's multi-process mode binds the port once in a supervising process
and starts N children (spawned, not forked) that accept on that socket; the
kernel hands each new connection to one of them. A child that dies (a crash,
SIGKILL) is started again by the supervisor within a second. Each child
builds the app from the environment (`app_from_environment`) with its own
pool: the API processes share nothing but PostgreSQL (DESIGN: stateless).

The job worker runs once, in a thread of the supervising process, not in the
children: periodic jobs are safe with several workers, but N copies would
only compete for the same runs. With `--no-jobs` there is none (run
`kring worker` processes instead).

With the embedded PostgreSQL the supervisor starts (or joins) the server
and passes its URL down in DATABASE_URL, so the children never start or
stop it; it stops when the supervisor exits, after the children.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from api.clock import Clock
from api.logs import configure_logging
from api.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the CLI imports this module; only the children need Litestar
    from litestar import Litestar

APP_FACTORY = "api.serving:app_from_environment"
# More processes than this on one machine only add connections to PostgreSQL
# (each process has its own pool of up to KRING_DB_POOL_MAX_SIZE).
WORKERS_MAX = 64
# The supervisor pings each process every half second and replaces one that
# does not answer within this many seconds. Uvicorn's default, 5 s, is shorter
# than a process takes to start on a busy machine (a fresh interpreter
# importing the app): the fault test's machine, at a load of 12 on 2 cores,
# saw each new process killed before it was up, again and again, and the
# server never answered.
HEALTHCHECK_SECONDS = 60


def app_from_environment() -> Litestar:
    """The application in one child of `serve --workers N`: settings and the
    database URL come from the environment its supervisor passed down."""
    from api.app import create_app

    # Spawned, not forked: the child sets up the redacting root handler itself.
    configure_logging()
    settings = load_settings()
    if settings.database_url is None:
        # The supervisor always sets it; a child never starts a database itself.
        raise SettingsError("DATABASE_URL is not set in an API worker process")
    return create_app(settings, settings.database_url, run_jobs=False)


def serve_processes(
    settings: Settings,
    database_url: str,
    *,
    host: str,
    port: int,
    workers: int,
    run_jobs: bool,
) -> None:
    """Serve with `workers` API processes (and one job worker unless not
    `run_jobs`) until SIGINT or SIGTERM; the children stop first, then the
    job worker finishes its running jobs."""
    import uvicorn

    from api.jobs import start_in_process
    from api.payments.providers import configure_payments

    # Spawned children inherit this environment: the same database for all.
    os.environ["DATABASE_URL"] = database_url
    handle = None
    if run_jobs:
        configure_payments(settings)  # VIP renewals pay through the configured provider
        handle = asyncio.run(start_in_process(database_url, settings, Clock()))
    try:
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=settings.log_level,
            # uvicorn's loggers go through the root handler and its redaction (api/logs.py).
            log_config=None,
        )
    finally:
        if handle is not None:
            asyncio.run(handle.stop())
