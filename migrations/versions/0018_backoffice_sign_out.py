"""Back-office sign-out that ends the session on the server (issue 7).

A back-office session is a signed cookie; it names the admin's session
generation, and signing out moves the generation on, so a copy of the
cookie stops working at once instead of when it expires.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE admin_accounts"
        " ADD COLUMN session_generation integer NOT NULL DEFAULT 0"
        " CHECK (session_generation >= 0)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE admin_accounts DROP COLUMN session_generation")
