"""Environment-backed settings, validated once at start.

Every setting is an environment variable named in `ENV_NAMES`. A wrong value
raises `SettingsError` naming the variable; the CLI prints that one line and
exits, so an operator never reads a traceback for a typo.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

import msgspec

Mode = Literal["development", "production"]


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    mode: Mode = "development"
    # Unset: an embedded PostgreSQL in `data_dir/pgdata`. Set: that server.
    database_url: str | None = None
    data_dir: Path = Path(".kring")
    # HS256 key for partner access tokens. Required in production; in
    # development a random key is kept in data_dir so tokens survive restarts.
    jwt_secret: str | None = None
    partner_token_ttl_seconds: int = 900
    db_pool_min_size: int = 2
    db_pool_max_size: int = 40
    # Burn authorizations not captured by then are voided by a job.
    hold_minutes_default: int = 30
    # How often the periodic jobs (release, expiry, hold voiding) run.
    job_interval_seconds: int = 30
    log_level: Literal["debug", "info", "warning", "error"] = "info"


ENV_NAMES: dict[str, str] = {
    "mode": "KRING_MODE",
    "database_url": "DATABASE_URL",
    "data_dir": "KRING_DATA_DIR",
    "jwt_secret": "KRING_JWT_SECRET",
    "partner_token_ttl_seconds": "KRING_PARTNER_TOKEN_TTL_SECONDS",
    "db_pool_min_size": "KRING_DB_POOL_MIN_SIZE",
    "db_pool_max_size": "KRING_DB_POOL_MAX_SIZE",
    "hold_minutes_default": "KRING_HOLD_MINUTES_DEFAULT",
    "job_interval_seconds": "KRING_JOB_INTERVAL_SECONDS",
    "log_level": "KRING_LOG_LEVEL",
}

_POSITIVE_INTS = (
    "partner_token_ttl_seconds",
    "db_pool_min_size",
    "db_pool_max_size",
    "hold_minutes_default",
    "job_interval_seconds",
)
JWT_SECRET_BYTES_MIN = 32


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for field, name in ENV_NAMES.items():
        value = env.get(name)
        if value is None or value == "":
            continue
        if field == "data_dir":
            raw[field] = Path(value)
        elif field in _POSITIVE_INTS:
            if not value.isdigit() or int(value) <= 0:
                raise SettingsError(f"{name} must be a positive whole number, got {value!r}")
            raw[field] = int(value)
        else:
            raw[field] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False, builtin_types=(Path,))
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`")
        name = ENV_NAMES.get(field, field)
        raise SettingsError(f"{name} is invalid: {exc}") from None
    return _finish(settings)


def _finish(settings: Settings) -> Settings:
    if settings.database_url is not None and not settings.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise SettingsError("DATABASE_URL must be a postgresql:// URL")
    if settings.db_pool_min_size > settings.db_pool_max_size:
        raise SettingsError("KRING_DB_POOL_MIN_SIZE must not exceed KRING_DB_POOL_MAX_SIZE")
    secret = settings.jwt_secret
    if secret is not None and len(secret.encode()) < JWT_SECRET_BYTES_MIN:
        raise SettingsError(f"KRING_JWT_SECRET must be at least {JWT_SECRET_BYTES_MIN} bytes")
    if secret is None:
        if settings.mode == "production":
            raise SettingsError("KRING_JWT_SECRET is required when KRING_MODE=production")
        secret = _development_secret(settings.data_dir)
    return msgspec.structs.replace(
        settings, jwt_secret=secret, data_dir=settings.data_dir.resolve()
    )


def _development_secret(data_dir: Path) -> str:
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
