"""Back-office pages of the programme: challenges, lotteries, VIP and charities,
one module each; the router takes them from here."""

from __future__ import annotations

from typing import Any

from api.backoffice import challenges, charities, lotteries, vip

HANDLERS: list[Any] = [
    *challenges.HANDLERS,
    *lotteries.HANDLERS,
    *vip.HANDLERS,
    *charities.HANDLERS,
]
