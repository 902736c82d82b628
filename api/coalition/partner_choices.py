"""Partners as admins pick them in a form: id and name, active ones only."""

from __future__ import annotations

import asyncpg

CHOICES_MAX = 1_000


async def active_partner_choices(db: asyncpg.Pool | asyncpg.Connection) -> list[tuple[int, str]]:
    """(id, name) of active partners by name; at most CHOICES_MAX (a coalition is not larger)."""
    rows = await db.fetch(
        "SELECT id, name FROM partners WHERE status = 'active' ORDER BY name, id LIMIT $1",
        CHOICES_MAX,
    )
    return [(row["id"], row["name"]) for row in rows]
