"""The headers of a delivery: `Kring-Signature` with one `v1` per valid secret.

The receiver's side lives in the partner kit (`partners.webhooks`); both must
agree on `f"{t}.".encode() + body`, which the integration tests prove by
verifying real deliveries with the kit.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

SIGNATURE_HEADER = "Kring-Signature"
EVENT_ID_HEADER = "Kring-Event-Id"
EVENT_TYPE_HEADER = "Kring-Event-Type"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(
    body: bytes,
    *,
    secret: str,
    previous_secret: str | None,
    previous_secret_expires_at: datetime | None,
    now: datetime,
) -> str:
    timestamp = int(now.timestamp())
    parts = [f"t={timestamp}", f"v1={signature(secret, timestamp, body)}"]
    # During a rotation the old secret signs too, so receivers can switch when ready.
    if (
        previous_secret is not None
        and previous_secret_expires_at is not None
        and now < previous_secret_expires_at
    ):
        parts.append(f"v1={signature(previous_secret, timestamp, body)}")
    return ",".join(parts)
