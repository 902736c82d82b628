"""What the credentials page reads: the partner's live API client ids (never secrets)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

CLIENTS_SHOWN_MAX = 10  # rotation revokes the old ones, so a partner has one in practice


@dataclass(frozen=True, slots=True)
class ApiClient:
    client_id: str
    created_at: datetime


async def active_clients(pool: asyncpg.Pool, partner_id: int) -> list[ApiClient]:
    rows = await pool.fetch(
        """SELECT client_id, created_at FROM partner_credentials
           WHERE partner_id = $1 AND revoked_at IS NULL
           ORDER BY created_at DESC LIMIT $2""",
        partner_id,
        CLIENTS_SHOWN_MAX,
    )
    return [ApiClient(r["client_id"], r["created_at"]) for r in rows]
