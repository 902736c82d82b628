"""Which PostgreSQL to use: DATABASE_URL when set, else the embedded server."""

from __future__ import annotations

from dataclasses import dataclass

from api.db.embedded import EmbeddedServer, start_embedded
from api.settings import Settings


@dataclass
class Database:
    url: str
    embedded: EmbeddedServer | None = None


def open_database(settings: Settings) -> Database:
    if settings.database_url is not None:
        return Database(settings.database_url)
    server, url = start_embedded(settings.data_dir)
    return Database(url, server)
