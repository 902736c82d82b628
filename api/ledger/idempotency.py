"""Idempotency claims, written in the same statement as the ledger change.

A `Claim` is the key a partner (or member) sent, a hash of the request and the
answer to give. The ledger statement inserts it first (`go` CTE); a key that
already exists makes the rest of the statement write nothing, and the caller
returns the stored answer. Concurrent requests with one key queue on the key's
unique index, so exactly one of them writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

IDEMPOTENCY_KEY_LENGTH_MAX = 255


@dataclass(frozen=True, slots=True)
class Claim:
    partner_id: int
    key: str
    request_sha256: bytes
    response_status: int
    response_body: bytes
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    request_sha256: bytes
    status: int
    body: bytes


GO_CLAIMED = """
go AS (
    INSERT INTO idempotency_keys
        (partner_id, key, request_sha256, response_status, response_body, created_at)
    VALUES (:claim_partner_id, :claim_key, :claim_request_sha256,
            :claim_response_status, :claim_response_body, :claim_created_at)
    ON CONFLICT DO NOTHING
    RETURNING 1 AS go
)"""

GO_ALWAYS = "go AS (SELECT 1 AS go)"


def go_cte(with_claim: bool) -> str:
    return GO_CLAIMED if with_claim else GO_ALWAYS


def claim_params(claim: Claim | None) -> dict[str, Any]:
    if claim is None:
        return {}
    return {
        "claim_partner_id": claim.partner_id,
        "claim_key": claim.key,
        "claim_request_sha256": claim.request_sha256,
        "claim_response_status": claim.response_status,
        "claim_response_body": claim.response_body,
        "claim_created_at": claim.created_at,
    }


async def stored_answer(conn: Any, partner_id: int, key: str) -> StoredAnswer | None:
    row = await conn.fetchrow(
        "SELECT request_sha256, response_status, response_body FROM idempotency_keys"
        " WHERE partner_id = $1 AND key = $2",
        partner_id,
        key,
    )
    if row is None:
        return None
    return StoredAnswer(row["request_sha256"], row["response_status"], row["response_body"])
