"""The log filter takes out what other libraries may log: bearer tokens, JWTs,
cookie values and secret form or JSON fields; the rest of the line stays."""

from __future__ import annotations

import logging

from api.logs import REDACTED, RedactSecrets, redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_redact_takes_out_secrets_and_keeps_the_rest() -> None:
    cases = {
        f"Authorization: Bearer {JWT}": "Authorization: Bearer [redacted]",
        f"token {JWT} issued": f"token {REDACTED} issued",
        "(b'set-cookie', b'kring_wallet=abc.def; HttpOnly; Path=/'), (b'x-frame-options', b'DENY')": (
            "(b'set-cookie', b'[redacted]'), (b'x-frame-options', b'DENY')"
        ),
        "Cookie: kring_portal=s3cr3t-value": "Cookie: [redacted]",
        "client_id=c1&client_secret=hunter2hunter2&grant_type=x": (
            "client_id=c1&client_secret=[redacted]&grant_type=x"
        ),
        '{"email": "a@b.c", "code": "123456"}': '{"email": "a@b.c", "code": "[redacted]"}',
        '{"password": "pw-pw-pw", "totp_code": "654321"}': (
            '{"password": "[redacted]", "totp_code": "[redacted]"}'
        ),
        "released 12 points in 3 lots": "released 12 points in 3 lots",
    }
    for line, expected in cases.items():
        assert redact(line) == expected, line


def test_the_filter_renders_arguments_and_tracebacks_redacted() -> None:
    record = logging.makeLogRecord(
        {"msg": "sent %s", "args": (f"Bearer {JWT}",), "levelno": logging.INFO}
    )
    try:
        raise ValueError(f"bad cookie=kring_wallet={JWT}")
    except ValueError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert JWT not in text and JWT.rsplit(".", 1)[1] not in text
    assert text.startswith("sent Bearer [redacted]") and "ValueError" in text
