"""Member card numbers: 16 digits, the last a Luhn check digit.

The check digit lets a till reject a mistyped number before asking the
server, and lets the server tell "typo" (`invalid_card_number`) apart from
"no such member" (`member_not_found`).
"""

from __future__ import annotations

import secrets

CARD_PREFIX = "6048"  # Kring's issuer prefix
CARD_LENGTH = 16


def luhn_check_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:  # doubled: these sit left of the check digit at odd offsets
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def is_valid_card_number(number: str) -> bool:
    return (
        len(number) == CARD_LENGTH
        and number.isascii()
        and number.isdigit()
        and luhn_check_digit(number[:-1]) == number[-1]
    )


def new_card_number() -> str:
    body_length = CARD_LENGTH - len(CARD_PREFIX) - 1
    body = CARD_PREFIX + "".join(secrets.choice("0123456789") for _ in range(body_length))
    return body + luhn_check_digit(body)
