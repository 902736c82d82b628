"""What the app holds while it runs, and the dependencies that hand it out."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from litestar.datastructures import State

from api.clock import Clock
from api.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    pool: asyncpg.Pool | None = None

    @property
    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open")
        return self.pool


def runtime(state: State) -> Runtime:
    rt: Runtime = state.runtime
    return rt
