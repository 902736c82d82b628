"""Run Alembic migrations programmatically (on start and by `kring db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url))
    return config


def sqlalchemy_url(database_url: str) -> str:
    _scheme, rest = database_url.split("://", 1)
    return f"postgresql+asyncpg://{rest}".replace("%", "%%")


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")
