"""When a member is VIP: the one rule every benefit reads (no imports, so
the earn path's tier read can use it without import cycles).

A member is VIP at an instant when a paid period covers it
([starts_at, ends_at)), or while their subscription is in grace: from the
last period's end until `grace_until`, with that period's benefits.
"""

from __future__ import annotations


def vip_benefit_at(column: str, member: str, at: str) -> str:
    """SQL: a benefit (`column` of `vip_periods`) of member `member` at the
    instant `at` (both SQL expressions), NULL when not VIP then."""
    return f"""(
    SELECT vp.{column}
    FROM vip_periods vp JOIN vip_subscriptions vs ON vs.id = vp.subscription_id
    WHERE vp.member_id = {member} AND vp.starts_at <= {at}
      AND (vp.ends_at > {at}
           OR (vs.status = 'grace' AND vp.ends_at = vs.current_period_end
               AND vs.grace_until > {at}))
    ORDER BY vp.starts_at DESC
    LIMIT 1
)"""


def vip_multiplier_at(member: str, at: str) -> str:
    """SQL: the VIP multiplier (per mille) of `member` at `at`, NULL when not VIP."""
    return vip_benefit_at("multiplier_permille", member, at)


def vip_free_lottery_tickets_at(member: str, at: str) -> str:
    """SQL: the extra free lottery tickets of `member` at `at` (0 when not VIP)."""
    return f"coalesce({vip_benefit_at('free_lottery_tickets', member, at)}, 0)"


def combined_multiplier_permille(tier_permille: int, vip_permille: int | None) -> int:
    """Tier and VIP add their extras: x1.25 Silver with x1.5 VIP is x1.75."""
    return tier_permille + (0 if vip_permille is None else vip_permille - 1000)
