"""The HTTP side of idempotency: the `Idempotency-Key` header and replays.

The key is scoped to the partner. The request is fingerprinted by path and
the decoded body re-encoded canonically, so the same request sent with other
whitespace is still the same request, and a different body is a conflict.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from api.errors import Conflict, DomainError
from api.ledger.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX, StoredAnswer

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    replayed: bool = False


def require_key(value: str | None) -> str:
    if value is None or value == "":
        raise DomainError(
            f"every POST needs an {HEADER} header", code="idempotency_key_missing", status=400
        )
    if len(value) > IDEMPOTENCY_KEY_LENGTH_MAX or not value.isascii() or not value.isprintable():
        raise DomainError(
            f"{HEADER} must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters",
            code="idempotency_key_invalid",
            status=400,
        )
    return value


def fingerprint(path: str, canonical_body: bytes) -> bytes:
    return hashlib.sha256(path.encode() + b"\0" + canonical_body).digest()


def replay(stored: StoredAnswer, request_sha256: bytes) -> Answer:
    if stored.request_sha256 != request_sha256:
        raise Conflict(
            "this Idempotency-Key was used with a different request",
            code="idempotency_conflict",
        )
    return Answer(stored.status, stored.body, replayed=True)
