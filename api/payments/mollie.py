"""The Mollie adapter, on mollie-api-python.

Mollie's webhook POSTs only `id=tr_…`; the adapter then fetches the payment
from Mollie's API and takes its status from there, never from the body. The
library is synchronous (requests), so every call runs in a worker thread.

Settings: `KRING_MOLLIE_API_KEY` (`test_…` or `live_…`) and
`KRING_MOLLIE_API_URL` (Mollie's `https://api.mollie.com/v2` by default; the
tests point it at a stub on loopback).

Only one-off payments go through Mollie for now: first and recurring payments
need a Mollie customer and mandate, which this adapter does not create yet.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from mollie.api.client import Client
from mollie.api.error import Error, NotFoundError

from api.errors import DomainError
from api.payments.providers import (
    MOLLIE_STATUS,
    NewProviderPayment,
    ProviderPayment,
    payment_not_found,
)

NAME = "mollie"
API_VERSION_SUFFIX = "/v2"


def amount_value(cents: int) -> str:
    """Mollie's amount: a string with exactly two decimals."""
    return f"{cents // 100}.{cents % 100:02d}"


def our_status(mollie_status: str) -> str:
    status = MOLLIE_STATUS.get(mollie_status)
    if status is None:
        raise DomainError(
            f"Mollie answered an unknown payment status {mollie_status!r}",
            code="provider_error",
            status=502,
        )
    return status


def _provider_error(exc: Exception) -> DomainError:
    return DomainError(
        f"Mollie could not be reached or refused the call: {exc}",
        code="provider_error",
        status=502,
    )


class MollieProvider:
    name = NAME

    def __init__(self, api_key: str, api_url: str) -> None:
        # The library appends the API version to its endpoint itself.
        self._client = Client(api_endpoint=api_url.rstrip("/").removesuffix(API_VERSION_SUFFIX))
        self._client.set_api_key(api_key)

    @staticmethod
    @lru_cache(maxsize=4)
    def cached(api_key: str, api_url: str) -> MollieProvider:
        """One client (and its HTTP connection pool) per key and URL."""
        return MollieProvider(api_key, api_url)

    async def create(self, payment: NewProviderPayment) -> ProviderPayment:
        if payment.sequence != "oneoff":
            raise DomainError(
                "recurring payments through Mollie are not supported yet",
                code="payment_sequence_unsupported",
            )
        data: dict[str, Any] = {
            "amount": {"currency": "EUR", "value": amount_value(payment.amount_cents)},
            "description": payment.description,
            "redirectUrl": payment.redirect_url,
            "metadata": {"kring_payment_id": payment.payment_id},
        }
        if payment.webhook_url is not None:
            data["webhookUrl"] = payment.webhook_url
        try:
            created = await asyncio.to_thread(
                self._client.payments.create,
                data,
                idempotency_key=f"kring-payment-{payment.payment_id}",
            )
        except Error as exc:
            raise _provider_error(exc) from None
        return ProviderPayment(
            id=str(created.id),
            checkout_url=created.checkout_url,
            status=our_status(str(created.status)),
        )

    async def fetch(self, provider_payment_id: str) -> str:
        if not provider_payment_id.startswith("tr_"):
            raise payment_not_found()
        try:
            found = await asyncio.to_thread(self._client.payments.get, provider_payment_id)
        except NotFoundError:
            raise payment_not_found() from None
        except Error as exc:
            # A 5xx to the webhook: Mollie calls it again later.
            raise _provider_error(exc) from None
        return our_status(str(found.status))
