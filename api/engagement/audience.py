"""Who a challenge is for: its audience as one SQL condition.

- everyone: every active member;
- tier: members whose stored tier is the challenge's (no stored tier: the lowest);
- lapsed: members who bought before and not in the `lapsed_days` before the
  moment judged (win-back); someone who never bought is new, not lapsed;
- vip: members with VIP benefits at that instant: a paid period covers it, or
  their subscription is in grace (api/vip/window.py).

Automatic enrolment judges at the challenge's start, joining at the moment
of joining, a personal (win-back) offer at the moment it is made.
"""

from __future__ import annotations

from api.vip.window import vip_multiplier_at


def in_audience(at: str) -> str:
    """SQL that is true when member `m` is in challenge `c`'s audience at the
    instant `at` (an SQL expression, e.g. 'c.starts_at' or a parameter)."""
    return f"""(
    m.status = 'active' AND (
        c.audience = 'everyone'
        OR (c.audience = 'tier' AND c.audience_tier = coalesce(
                (SELECT mt.tier_code FROM member_tiers mt WHERE mt.member_id = m.id),
                (SELECT lowest.code FROM tiers lowest WHERE lowest.threshold_points = 0)))
        OR (c.audience = 'lapsed'
            AND EXISTS (SELECT FROM transactions before_lapse
                        WHERE before_lapse.member_id = m.id AND before_lapse.kind = 'earn'
                          AND before_lapse.created_at < {at} - make_interval(days => c.lapsed_days))
            AND NOT EXISTS (SELECT FROM transactions recent
                            WHERE recent.member_id = m.id AND recent.kind = 'earn'
                              AND recent.created_at >= {at} - make_interval(days => c.lapsed_days)
                              AND recent.created_at < {at}))
        OR (c.audience = 'vip' AND {vip_multiplier_at("m.id", at)} IS NOT NULL)
    ))"""
