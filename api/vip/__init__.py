"""Paid VIP membership: plans, the subscription lifecycle and its benefits."""
