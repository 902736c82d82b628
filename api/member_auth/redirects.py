"""Where to go after sign-in: only a path on this site, never another host."""

from __future__ import annotations

from urllib.parse import urlsplit

NEXT_PATH_CHARS_MAX = 2000
HOME = "/"
# After sign-in, never back to the sign-in pages themselves.
_SIGN_IN_PREFIXES = ("/sign-in", "/sign-out")


def safe_next(value: str | None) -> str:
    """`value` if it is a same-site relative path, else the wallet's home."""
    if not value or len(value) > NEXT_PATH_CHARS_MAX:
        return HOME
    # "//evil.example" and "/\\evil.example" are protocol-relative to browsers;
    # control characters (tab, newline) are dropped by browsers before parsing.
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return HOME
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return HOME
    if parts.path.startswith(_SIGN_IN_PREFIXES):
        return HOME
    return value
