"""The transactional outbox: events written by the statement that makes them true.

A ledger statement that announces something adds `OUTBOX_CTE`: it inserts the
event from the statement's `go` CTE, so an idempotent repeat (no `go` row)
announces nothing, and a statement or transaction that rolls back takes its
event with it. Only partners with an active endpoint get rows at all; the
`EXISTS` probe uses the partial index on active endpoints, so a partner
without webhooks pays one index lookup and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from api.ids import new_transaction_id

POINTS_EARNED = "points.earned"
POINTS_BURNED = "points.burned"
POINTS_REFUNDED = "points.refunded"
POINTS_RELEASED = "points.released"
BURN_AUTHORIZATION_EXPIRED = "burn.authorization_expired"
STATEMENT_CLOSED = "statement.closed"
EVENT_TYPES = (
    POINTS_EARNED,
    POINTS_BURNED,
    POINTS_REFUNDED,
    POINTS_RELEASED,
    BURN_AUTHORIZATION_EXPIRED,
    STATEMENT_CLOSED,
)

# The SQL that checks for an active endpoint; shared by every writer of events.
HAS_ACTIVE_ENDPOINT = (
    "EXISTS (SELECT 1 FROM webhook_endpoints w"
    " WHERE w.partner_id = {partner} AND w.disabled_at IS NULL)"
)


@dataclass(frozen=True, slots=True)
class Event:
    """An event to announce: its type and its JSON payload, already encoded
    (for API calls, the very bytes the partner got as the answer)."""

    type: str
    payload: bytes
    id: UUID = field(default_factory=new_transaction_id)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {self.type!r}")


# Expects `go` and the parameters of `event_params`; `:booked_at` dates the event.
OUTBOX_CTE = f"""
announced AS (
    INSERT INTO webhook_events (id, partner_id, type, payload, created_at)
    SELECT :event_id::uuid, :event_partner_id::bigint, :event_type::text,
           :event_payload::text::jsonb, :booked_at::timestamptz
    FROM go
    WHERE :event_type::text IS NOT NULL
      AND {HAS_ACTIVE_ENDPOINT.format(partner=":event_partner_id::bigint")}
)"""


def event_params(event: Event | None, partner_id: int) -> dict[str, Any]:
    if event is None:
        return {
            "event_id": None,
            "event_partner_id": partner_id,
            "event_type": None,
            "event_payload": None,
        }
    return {
        "event_id": event.id,
        "event_partner_id": partner_id,
        "event_type": event.type,
        "event_payload": event.payload.decode(),
    }


_ENQUEUE = f"""
INSERT INTO webhook_events (id, partner_id, type, payload, created_at)
SELECT $1, $2, $3, $4::text::jsonb, $5
WHERE {HAS_ACTIVE_ENDPOINT.format(partner="$2::bigint")}
"""


async def enqueue(
    conn: asyncpg.Connection, partner_id: int, event: Event, *, now: datetime
) -> None:
    """Write an event on `conn`, inside the caller's transaction (for writers
    that are not one ledger statement, e.g. settlement's `statement.closed`)."""
    await conn.execute(_ENQUEUE, event.id, partner_id, event.type, event.payload.decode(), now)
