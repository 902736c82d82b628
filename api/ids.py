"""Identifiers for new rows.

Transactions get UUIDv7 ids: time-ordered, so new rows land at the right-hand
edge of the primary-key index instead of on a random page (random UUIDv4 keys
dirty a different index page per insert, and after each checkpoint every such
page is written to the WAL in full).
"""

from __future__ import annotations

from uuid import UUID

import uuid6


def new_transaction_id() -> UUID:
    return UUID(int=uuid6.uuid7().int)
