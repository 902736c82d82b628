"""What a partner agreed to: its rates and prices, as the ledger needs them."""

from __future__ import annotations

from dataclasses import dataclass

POINTS_EXPIRE_AFTER_MONTHS = 36


@dataclass(frozen=True, slots=True)
class PartnerTerms:
    partner_id: int
    status: str
    currency: str
    earn_rate_millipoints_per_euro: int
    issuance_price_micros: int
    redemption_price_micros: int
    return_window_days: int
    points_issued_id: int
    points_redeemed_id: int
