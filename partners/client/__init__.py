"""A typed async client for the Kring partner API. Ships without the server."""

from partners.client.client import (
    API_PREFIX,
    IDEMPOTENCY_HEADER,
    REPLAY_HEADER,
    PartnerClient,
    new_idempotency_key,
)
from partners.client.errors import PartnerApiError
from partners.client.models import (
    KIND_BURN,
    KIND_EARN,
    KIND_REFUND,
    PAGE_SIZE_MAX,
    STATUS_AUTHORIZED,
    STATUS_CAPTURED,
    STATUS_PENDING,
    STATUS_VOIDED,
    Member,
    Problem,
    Token,
    Transaction,
    TransactionPage,
)

__all__ = [
    "API_PREFIX",
    "IDEMPOTENCY_HEADER",
    "KIND_BURN",
    "KIND_EARN",
    "KIND_REFUND",
    "PAGE_SIZE_MAX",
    "REPLAY_HEADER",
    "STATUS_AUTHORIZED",
    "STATUS_CAPTURED",
    "STATUS_PENDING",
    "STATUS_VOIDED",
    "Member",
    "PartnerApiError",
    "PartnerClient",
    "Problem",
    "Token",
    "Transaction",
    "TransactionPage",
    "new_idempotency_key",
]
