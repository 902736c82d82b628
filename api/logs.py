"""Logging for every `kring` process: one handler on the root logger, with a
filter that takes secrets out of whatever reaches it.

Kring's own log lines carry no secret, code or token (ids and counts only).
The filter is for what other libraries log at DEBUG: httpcore, for one, logs
every response's headers, Set-Cookie values included, and a traceback may
quote a request. Uvicorn's and Litestar's loggers are left to propagate here,
so nothing is written by a handler without the filter.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SECRETS = [
    # Authorization: Bearer …, in any spelling of the header.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{REDACTED}"),
    # Any JWT (Kring's access tokens, session cookies and tickets are JWTs).
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Cookie and Set-Cookie header values, as text or as httpcore's byte pairs.
    (
        re.compile(r"(?i)((?:set-)?cookie['\"]?\s*[:,=]\s*b?['\"]?)[^'\"\r\n]+"),
        rf"\g<1>{REDACTED}",
    ),
    # Form or JSON fields that hold a secret.
    (
        re.compile(
            r"(?i)(\b(?:client_secret|password|totp_code|recovery_code|code|csrf_token"
            r"|access_token|secret)['\"]?\s*[:=]\s*b?['\"]?)[^'\"&,\s}]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Renders the record's message (and traceback) once, with secrets replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep what it says, unformatted
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """The root handler (stderr) with the redacting filter."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RedactSecrets())
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
