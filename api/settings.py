"""Environment-backed settings, validated once at start.

Every setting is an environment variable named in `ENV_NAMES`. A wrong value
raises `SettingsError` naming the variable; the CLI prints that one line and
exits, so an operator never reads a traceback for a typo.
"""

from __future__ import annotations

import os
import re
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
    # How often the engagement processor (challenge progress, rewards,
    # referrals) looks for members whose purchases changed.
    engagement_interval_seconds: int = 2
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The programme's own bank account, which `kring payouts` pays partners
    # from. All three unset: no payout files. Checked like partners' details
    # (api/coalition/banking.py) and stored normalised; the BIC is derived from
    # the IBAN when not given, and must be given when it cannot be.
    payout_account_name: str | None = None
    payout_iban: str | None = None
    payout_bic: str | None = None
    # Where mail (sign-in codes) goes: `smtp://user:pass@host:587?starttls=1` or
    # `smtps://…`. Unset: the development mailbox at /dev/mailbox; production
    # refuses to start without it.
    smtp_url: str | None = None
    mail_from: str = "Kring <no-reply@kring.localhost>"
    # Payments (api/payments/): with a Mollie API key, members pay through
    # Mollie; without one, through the built-in sandbox (development only).
    mollie_api_key: str | None = None
    mollie_api_url: str = "https://api.mollie.com/v2"
    # This deployment's public base URL (`https://kring.example`), which
    # providers post payment notifications to; unset, none are requested.
    public_url: str | None = None
    # What the programme pays a charity for each point given to it, in
    # micro-euros (8000 = 0.8 cent), at the monthly charity settlement.
    charity_point_price_micros: int = 8000
    # Manual adjustments (api/ledger/adjustments.py) of more than this many
    # points wait for a second admin's approval; up to it they are booked at
    # once. 0: every adjustment needs a second admin.
    adjustment_approval_points: int = 500


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
    "engagement_interval_seconds": "KRING_ENGAGEMENT_INTERVAL_SECONDS",
    "log_level": "KRING_LOG_LEVEL",
    "payout_account_name": "KRING_PAYOUT_ACCOUNT_NAME",
    "payout_iban": "KRING_PAYOUT_IBAN",
    "payout_bic": "KRING_PAYOUT_BIC",
    "smtp_url": "KRING_SMTP_URL",
    "mail_from": "KRING_MAIL_FROM",
    "mollie_api_key": "KRING_MOLLIE_API_KEY",
    "mollie_api_url": "KRING_MOLLIE_API_URL",
    "public_url": "KRING_PUBLIC_URL",
    "charity_point_price_micros": "KRING_CHARITY_POINT_PRICE_MICROS",
    "adjustment_approval_points": "KRING_ADJUSTMENT_APPROVAL_POINTS",
}

_POSITIVE_INTS = (
    "partner_token_ttl_seconds",
    "db_pool_min_size",
    "db_pool_max_size",
    "hold_minutes_default",
    "job_interval_seconds",
    "engagement_interval_seconds",
    "charity_point_price_micros",
)
# Whole numbers where 0 means something (`adjustment_approval_points`: always ask).
_NON_NEGATIVE_INTS = ("adjustment_approval_points",)
# No adjustment is larger (the adjustments table's CHECK), so a higher
# threshold would only hide a typo.
ADJUSTMENT_APPROVAL_POINTS_MAX = 10_000_000
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
        elif field in _NON_NEGATIVE_INTS:
            if (
                not (value.isascii() and value.isdigit())
                or int(value) > ADJUSTMENT_APPROVAL_POINTS_MAX
            ):
                raise SettingsError(
                    f"{name} must be a whole number from 0 to {ADJUSTMENT_APPROVAL_POINTS_MAX},"
                    f" got {value!r}"
                )
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
    settings = _payout_account(settings)
    settings = _mail(settings)
    _payments(settings)
    return msgspec.structs.replace(
        settings, jwt_secret=secret, data_dir=settings.data_dir.resolve()
    )


# Which variable a bank-details error is about, by its code.
_PAYOUT_ERROR_VARIABLES = {
    "invalid_iban": "KRING_PAYOUT_IBAN",
    "invalid_bic": "KRING_PAYOUT_BIC",
    "account_holder_required": "KRING_PAYOUT_ACCOUNT_NAME",
}


def _payout_account(settings: Settings) -> Settings:
    """The programme's payout account, validated and normalised, or unset."""
    name, iban, bic = settings.payout_account_name, settings.payout_iban, settings.payout_bic
    if name is None and iban is None and bic is None:
        return settings
    if iban is None:
        raise SettingsError(
            "KRING_PAYOUT_IBAN is required when KRING_PAYOUT_ACCOUNT_NAME or KRING_PAYOUT_BIC"
            " is set"
        )
    if name is None:
        raise SettingsError(
            "KRING_PAYOUT_ACCOUNT_NAME (the name on the programme's account) is required when"
            " KRING_PAYOUT_IBAN is set"
        )
    # Imported here: schwifty loads its bank registry, which only this needs.
    from api.coalition.banking import validate_bank_details
    from api.errors import DomainError

    try:
        bank = validate_bank_details(iban, bic, name)
    except DomainError as exc:
        variable = _PAYOUT_ERROR_VARIABLES.get(exc.code, "KRING_PAYOUT_IBAN")
        raise SettingsError(f"{variable} is invalid: {exc.detail}") from None
    assert bank is not None  # an IBAN was given: details or an error
    if bank.bic is None:
        # A payout file names the bank it is paid from.
        raise SettingsError(
            "KRING_PAYOUT_BIC is required: it cannot be derived from KRING_PAYOUT_IBAN"
        )
    return msgspec.structs.replace(
        settings,
        payout_account_name=bank.account_holder,
        payout_iban=bank.iban,
        payout_bic=bank.bic,
    )


def _mail(settings: Settings) -> Settings:
    from api.mail.smtp import parse_mail_from, parse_smtp_url

    if settings.smtp_url is None:
        if settings.mode == "production":
            raise SettingsError(
                "KRING_SMTP_URL is required when KRING_MODE=production (sign-in codes are mailed)"
            )
    else:
        try:
            parse_smtp_url(settings.smtp_url)
        except ValueError as exc:
            raise SettingsError(f"KRING_SMTP_URL is invalid: it {exc}") from None
    try:
        mail_from = parse_mail_from(settings.mail_from)
    except ValueError as exc:
        raise SettingsError(f"KRING_MAIL_FROM is invalid: it {exc}") from None
    return msgspec.structs.replace(settings, mail_from=mail_from)


def _payments(settings: Settings) -> None:
    key = settings.mollie_api_key
    if key is not None and re.fullmatch(r"(live|test)_\w+", key) is None:
        raise SettingsError("KRING_MOLLIE_API_KEY is invalid: it starts with live_ or test_")
    for name, url in (
        ("KRING_MOLLIE_API_URL", settings.mollie_api_url),
        ("KRING_PUBLIC_URL", settings.public_url),
    ):
        if url is not None and not url.startswith(("https://", "http://")):
            raise SettingsError(f"{name} is invalid: it must be an http(s):// URL")


def _development_secret(data_dir: Path) -> str:
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
