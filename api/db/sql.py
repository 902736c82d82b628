"""SQL with named parameters, compiled once to asyncpg's positional `$n` form.

Ledger statements are long writable CTEs assembled from shared fragments;
named parameters keep them readable and keep fragments composable.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Query:
    __slots__ = ("names", "text")

    def __init__(self, text: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.text = _NAME.sub(number, text)
        self.names = tuple(names)

    def args(self, values: dict[str, Any]) -> list[Any]:
        missing = [name for name in self.names if name not in values]
        if missing:
            raise KeyError(f"missing SQL parameters: {', '.join(missing)}")
        return [values[name] for name in self.names]
