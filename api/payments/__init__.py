"""Payments members make in euros (VIP subscriptions), through one provider
interface: the built-in sandbox or Mollie. See payments.py."""
