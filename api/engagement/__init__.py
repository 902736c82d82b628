"""Engagement: tiers, challenges, referrals, lotteries (issue 5). No web framework here."""
