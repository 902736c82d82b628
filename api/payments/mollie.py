"""The Mollie adapter, on mollie-api-python.

Mollie's webhook POSTs only `id=tr_…`; the adapter then fetches the payment
from Mollie's API and takes its status from there, never from the body. The
library is synchronous (requests), so every call runs in a worker thread.

Settings: `KRING_MOLLIE_API_KEY` (`test_…` or `live_…`) and
`KRING_MOLLIE_API_URL` (Mollie's `https://api.mollie.com/v2` by default; the
tests point it at a stub on loopback).

Recurring payments (VIP renewals): the member's first payment is made with
`sequenceType: first` on a Mollie customer (created once per member, kept in
`payment_customers`, with no personal data but Kring's member id); paying it
gives the customer a mandate. Renewals are `sequenceType: recurring` on that
customer, with no checkout: Mollie charges the customer's valid mandate and
reports through the webhook. When Mollie refuses one (no valid mandate), the
payment has failed (`provider_refused`, see payments.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import lru_cache
from typing import Any

import asyncpg
from mollie.api.client import Client
from mollie.api.error import (
    BadRequestError,
    Error,
    NotFoundError,
    UnprocessableEntityError,
)

from api.errors import DomainError
from api.payments.providers import (
    MOLLIE_STATUS,
    NewProviderPayment,
    ProviderPayment,
    payment_not_found,
    provider_refused,
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
        data: dict[str, Any] = {
            "amount": {"currency": "EUR", "value": amount_value(payment.amount_cents)},
            "description": payment.description,
            "metadata": {"kring_payment_id": payment.payment_id},
            "sequenceType": payment.sequence,
        }
        if payment.sequence != "recurring":
            data["redirectUrl"] = payment.redirect_url
        if payment.sequence != "oneoff":
            if payment.customer_id is None:
                raise ValueError("first and recurring Mollie payments need a customer")
            data["customerId"] = payment.customer_id
        if payment.webhook_url is not None:
            data["webhookUrl"] = payment.webhook_url
        try:
            created = await asyncio.to_thread(
                self._client.payments.create,
                data,
                idempotency_key=f"kring-payment-{payment.payment_id}",
            )
        except (BadRequestError, UnprocessableEntityError) as exc:
            raise provider_refused(f"Mollie refused the payment: {exc}") from None
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

    async def create_customer(self, member_id: int) -> str:
        try:
            customer = await asyncio.to_thread(
                self._client.customers.create,
                {"metadata": {"kring_member_id": member_id}},
                idempotency_key=f"kring-member-{member_id}",
            )
        except Error as exc:
            raise _provider_error(exc) from None
        return str(customer.id)


async def customer_for(
    pool: asyncpg.Pool, provider: MollieProvider, member_id: int, now: datetime
) -> str:
    """The member's Mollie customer, created at Mollie the first time."""
    found = await pool.fetchval(
        "SELECT provider_customer_id FROM payment_customers"
        " WHERE member_id = $1 AND provider = 'mollie'",
        member_id,
    )
    if found is not None:
        return str(found)
    created = await provider.create_customer(member_id)
    # Two at once: the idempotency key gives both the same customer.
    await pool.execute(
        "INSERT INTO payment_customers (member_id, provider, provider_customer_id, created_at)"
        " VALUES ($1, 'mollie', $2, $3) ON CONFLICT DO NOTHING",
        member_id,
        created,
        now,
    )
    return str(
        await pool.fetchval(
            "SELECT provider_customer_id FROM payment_customers"
            " WHERE member_id = $1 AND provider = 'mollie'",
            member_id,
        )
    )
