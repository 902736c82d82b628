"""Webhook endpoints a partner registers: create, rotate the secret, disable,
and the delivery log. Plain SQL on a connection; the partner API wraps each
write in one transaction with its idempotency claim (`go` CTE), like the
ledger's writes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from api.db.sql import Query
from api.errors import Conflict, DomainError, NotFound
from api.ids import new_transaction_id
from api.ledger.idempotency import Claim, claim_params, go_cte

WEBHOOK_ENDPOINTS_PER_PARTNER_MAX = 10
# After a rotation the old secret still signs deliveries this long, so the
# partner can deploy the new one without dropping a delivery.
PREVIOUS_SECRET_VALID = timedelta(hours=24)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
DELIVERY_PAGE_SIZE_MAX = 100


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: UUID
    partner_id: int
    url: str
    created_at: datetime
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Attempt:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: UUID
    event_type: str
    event_created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    attempt_log: list[Attempt]


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def new_endpoint(partner_id: int, url: str, now: datetime) -> Endpoint:
    return Endpoint(new_transaction_id(), partner_id, url, now, None, None)


_ENDPOINT_COLUMNS = "id, partner_id, url, created_at, disabled_at, previous_secret_expires_at"


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        row["id"],
        row["partner_id"],
        row["url"],
        row["created_at"],
        row["disabled_at"],
        row["previous_secret_expires_at"],
    )


def _not_found() -> NotFound:
    # The same answer for "does not exist" and "belongs to another partner".
    return NotFound("no such webhook endpoint for this partner", code="webhook_endpoint_not_found")


async def lock_partner(conn: asyncpg.Connection, partner_id: int) -> None:
    """Serialize endpoint changes per partner (so the endpoint cap holds) and
    refuse a suspended partner. NO KEY UPDATE does not block ledger writes,
    which take only KEY SHARE on the partner row through foreign keys."""
    status = await conn.fetchval(
        "SELECT status FROM partners WHERE id = $1 FOR NO KEY UPDATE", partner_id
    )
    if status != "active":
        raise DomainError("this partner is suspended", code="partner_suspended", status=403)


async def require_room(conn: asyncpg.Connection, partner_id: int) -> None:
    active = await conn.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE partner_id = $1 AND disabled_at IS NULL",
        partner_id,
    )
    if active >= WEBHOOK_ENDPOINTS_PER_PARTNER_MAX:
        raise Conflict(
            f"a partner has at most {WEBHOOK_ENDPOINTS_PER_PARTNER_MAX} active webhook endpoints",
            code="webhook_endpoints_limit",
        )


async def locked_endpoint(conn: asyncpg.Connection, partner_id: int, endpoint_id: UUID) -> Endpoint:
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints"
        " WHERE id = $1 AND partner_id = $2 FOR UPDATE",
        endpoint_id,
        partner_id,
    )
    if row is None:
        raise _not_found()
    return _endpoint(row)


_CREATE = Query(f"""
WITH {go_cte(True)},
created AS (
    INSERT INTO webhook_endpoints (id, partner_id, url, secret, created_at)
    SELECT :endpoint_id::uuid, :partner_id::bigint, :url::text, :secret::text,
           :now::timestamptz
    FROM go
)
SELECT count(*) AS went FROM go
""")

_ROTATE = Query(f"""
WITH {go_cte(True)},
rotated AS (
    UPDATE webhook_endpoints
    SET previous_secret = secret, secret = :secret::text,
        previous_secret_expires_at = :previous_expires_at::timestamptz
    FROM go
    WHERE id = :endpoint_id::uuid AND disabled_at IS NULL
)
SELECT count(*) AS went FROM go
""")

# Pending deliveries to a disabled endpoint will never be tried: close them.
_DISABLE = Query(f"""
WITH {go_cte(True)},
disabled AS (
    UPDATE webhook_endpoints SET disabled_at = :now::timestamptz
    FROM go
    WHERE id = :endpoint_id::uuid AND disabled_at IS NULL
),
abandoned AS (
    UPDATE webhook_deliveries SET status = 'failed'
    FROM go
    WHERE endpoint_id = :endpoint_id::uuid AND status = 'pending'
)
SELECT count(*) AS went FROM go
""")


async def _write(conn: asyncpg.Connection, query: Query, claim: Claim, **values: Any) -> bool:
    went = await conn.fetchval(query.text, *query.args({**claim_params(claim), **values}))
    return bool(went)


async def insert_endpoint(
    conn: asyncpg.Connection, endpoint: Endpoint, secret: str, claim: Claim
) -> bool:
    """False when the claim was taken already (nothing written)."""
    return await _write(
        conn,
        _CREATE,
        claim,
        endpoint_id=endpoint.id,
        partner_id=endpoint.partner_id,
        url=endpoint.url,
        secret=secret,
        now=endpoint.created_at,
    )


def require_enabled(endpoint: Endpoint) -> None:
    if endpoint.disabled_at is not None:
        raise Conflict("this webhook endpoint is disabled", code="webhook_endpoint_disabled")


async def rotate_secret(
    conn: asyncpg.Connection, endpoint: Endpoint, secret: str, expires_at: datetime, claim: Claim
) -> bool:
    return await _write(
        conn,
        _ROTATE,
        claim,
        endpoint_id=endpoint.id,
        secret=secret,
        previous_expires_at=expires_at,
    )


async def disable(
    conn: asyncpg.Connection, endpoint: Endpoint, now: datetime, claim: Claim
) -> bool:
    return await _write(conn, _DISABLE, claim, endpoint_id=endpoint.id, now=now)


async def list_endpoints(pool: asyncpg.Pool, partner_id: int) -> list[Endpoint]:
    # Bounded: at most WEBHOOK_ENDPOINTS_PER_PARTNER_MAX active, and disabled
    # ones are few; the cap below keeps a pathological history from a huge answer.
    rows = await pool.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE partner_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        partner_id,
        DELIVERY_PAGE_SIZE_MAX,
    )
    return [_endpoint(r) for r in rows]


async def list_deliveries(
    pool: asyncpg.Pool, partner_id: int, endpoint_id: UUID, *, limit: int, before_id: int | None
) -> tuple[list[Delivery], bool]:
    """Newest first, with each delivery's attempts; True when there are more."""
    async with pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT 1 FROM webhook_endpoints WHERE id = $1 AND partner_id = $2",
            endpoint_id,
            partner_id,
        )
        if found is None:
            raise _not_found()
        rows = await conn.fetch(
            "SELECT d.id, d.event_id, e.type, e.created_at AS event_created_at, d.status,"
            "       d.attempts, d.next_attempt_at, d.delivered_at"
            " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
            " WHERE d.endpoint_id = $1 AND ($2::bigint IS NULL OR d.id < $2)"
            " ORDER BY d.id DESC LIMIT $3",
            endpoint_id,
            before_id,
            limit + 1,
        )
        page = rows[:limit]
        attempts = await conn.fetch(
            "SELECT delivery_id, attempted_at, status_code, error, duration_ms"
            " FROM webhook_attempts WHERE delivery_id = ANY($1::bigint[]) ORDER BY id",
            [r["id"] for r in page],
        )
    log: dict[int, list[Attempt]] = {}
    for a in attempts:
        log.setdefault(a["delivery_id"], []).append(
            Attempt(a["attempted_at"], a["status_code"], a["error"], a["duration_ms"])
        )
    deliveries = [
        Delivery(
            r["id"],
            r["event_id"],
            r["type"],
            r["event_created_at"],
            r["status"],
            r["attempts"],
            r["next_attempt_at"],
            r["delivered_at"],
            log.get(r["id"], []),
        )
        for r in page
    ]
    return deliveries, len(rows) > limit
