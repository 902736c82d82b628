"""The one interface every payment provider implements, and which one is used.

A provider creates a payment (returning where the member pays) and, asked
later, says what became of it. Kring never trusts a notification's body: a
webhook only names a payment, and its status is fetched from the provider.

`configure_payments(settings)` (called by the app factory and the worker)
chooses the provider new payments go to: Mollie when `KRING_MOLLIE_API_KEY`
is set, else the built-in sandbox. `provider_named` finds the provider a
payment was made with, for its notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg

from api.errors import DomainError, NotFound

if TYPE_CHECKING:
    from api.settings import Settings

STATUSES = ("open", "paid", "failed", "canceled", "expired")
FINAL_STATUSES = ("paid", "failed", "canceled", "expired")
SEQUENCES = ("oneoff", "first", "recurring")

# Mollie's payment statuses in ours: a payment the member has not finished
# (pending, authorized) is still open for us.
MOLLIE_STATUS = {
    "open": "open",
    "pending": "open",
    "authorized": "open",
    "paid": "paid",
    "failed": "failed",
    "canceled": "canceled",
    "expired": "expired",
}


@dataclass(frozen=True, slots=True)
class NewProviderPayment:
    """What a provider is asked to create (amounts in cents, EUR)."""

    payment_id: int
    member_id: int
    amount_cents: int
    description: str
    redirect_url: str
    # Where the provider posts its notifications (a full URL), if it posts any.
    webhook_url: str | None
    sequence: str = "oneoff"
    # The member's customer at the provider, for first and recurring payments
    # at a provider that needs one (Mollie).
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    id: str
    # Where the member pays; None for an off-session (recurring) payment.
    checkout_url: str | None
    status: str


class PaymentProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def create(self, payment: NewProviderPayment) -> ProviderPayment: ...

    async def fetch(self, provider_payment_id: str) -> str:
        """The payment's status in our terms; NotFound `payment_not_found`
        when the provider does not know the id."""
        ...


def provider_refused(detail: str) -> DomainError:
    """The provider refused to create the payment (e.g. no valid mandate for a
    recurring payment): the payment cannot be made."""
    return DomainError(detail, code="provider_refused", status=422)


def payment_not_found() -> NotFound:
    return NotFound("there is no such payment", code="payment_not_found")


@dataclass
class _Configured:
    mollie_api_key: str | None = None
    mollie_api_url: str = "https://api.mollie.com/v2"
    # Where providers post notifications: this deployment's public base URL.
    public_base_url: str | None = None
    production: bool = False


_configured = _Configured()


def configure_payments(settings: Settings) -> None:
    """Use Mollie when the settings carry an API key, else the sandbox."""
    _configured.mollie_api_key = settings.mollie_api_key
    _configured.mollie_api_url = settings.mollie_api_url
    _configured.public_base_url = settings.public_url
    _configured.production = settings.mode == "production"


def sandbox_offered(settings: Settings) -> bool:
    """The sandbox exists in development only: in production its routes are
    404 and no payment is made with it (without a Mollie key, none at all)."""
    return settings.mode != "production"


def mollie_configured() -> bool:
    return _configured.mollie_api_key is not None


def webhook_url(provider_name: str) -> str | None:
    """The full URL of a provider's webhook, when the public base URL is known."""
    base = _configured.public_base_url
    if base is None:
        return None
    return f"{base.rstrip('/')}/payments/webhooks/{provider_name}"


def default_provider(pool: asyncpg.Pool) -> PaymentProvider:
    """The provider new payments are made with."""
    if _configured.production and not mollie_configured():
        raise DomainError(
            "payments are not available: no payment provider is configured",
            code="payments_unavailable",
            status=503,
        )
    return provider_named(pool, "mollie" if mollie_configured() else "sandbox")


def provider_named(pool: asyncpg.Pool, name: str) -> PaymentProvider:
    """The provider called `name`; NotFound `payment_not_found` for one that is
    not configured here (its notifications cannot be about our payments)."""
    if name == "sandbox" and not _configured.production:
        from api.payments.sandbox import SandboxProvider

        return SandboxProvider(pool)
    if name == "mollie" and _configured.mollie_api_key is not None:
        from api.payments.mollie import MollieProvider

        return MollieProvider.cached(_configured.mollie_api_key, _configured.mollie_api_url)
    raise payment_not_found()
