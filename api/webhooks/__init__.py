"""Signed webhooks: the outbox the ledger writes to, endpoint management, and
the job that fans events out to endpoints and delivers them.

Nothing here imports the web framework; `/partner/v1/webhooks` lives in
`api.partner_api`. Importing this package imports nothing heavy: the ledger
imports `api.webhooks.outbox` on its hot path.
"""
