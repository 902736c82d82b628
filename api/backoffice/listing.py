"""Lists in the back-office: one page size, keyset pagination, one page shape.

A list query orders by a unique key (usually `(at DESC, id DESC)`), fetches one
row more than it shows to know whether there is a next page, and hands back
the cursor of the last row shown; `api/cursors.py` encodes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from api.cursors import encode_cursor

PAGE_SIZE = 50

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True, slots=True)
class ListPage(Generic[T]):
    items: list[T]
    next_cursor: str | None


def page_of(
    rows: Sequence[T], key: Callable[[T], Sequence[object]], size: int = PAGE_SIZE
) -> ListPage[T]:
    """The first `size` rows of a query that asked for `size + 1`, and the next cursor."""
    shown = list(rows[:size])
    if len(rows) <= size or not shown:
        return ListPage(shown, None)
    return ListPage(shown, encode_cursor(*key(shown[-1])))


class CursorPage(Protocol[T_co]):
    """A page of a keyset-paginated list, as the domain's list functions return it."""

    @property
    def items(self) -> Sequence[T_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


async def every_item(fetch: Callable[[str | None], Awaitable[CursorPage[T]]]) -> AsyncIterator[T]:
    """Every item of a list, one page (`fetch(cursor)`) at a time: what a CSV
    export streams, with no transaction open while the file downloads."""
    cursor: str | None = None
    while True:
        found = await fetch(cursor)
        for item in found.items:
            yield item
        if found.next_cursor is None:
            return
        cursor = found.next_cursor
