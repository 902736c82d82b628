"""Outgoing mail: an outbox in PostgreSQL, sent after commit by SMTP, or kept
as the development mailbox (`/dev/mailbox`) when no SMTP server is configured."""
