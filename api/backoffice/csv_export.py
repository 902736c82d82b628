"""CSV downloads: the one way every back-office table goes to a spreadsheet.

Rows are streamed as they come, so an export of a year of transactions never
sits in memory whole. Amounts stay integers (cents, points, micros) with the
unit in the column name, as the APIs speak; a spreadsheet formats them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from litestar.response import Stream

# A cell starting with one of these is a formula to Excel and LibreOffice
# (CSV injection); a leading apostrophe makes it text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # negative numbers stay numbers
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _line(writer: Any, row: Sequence[object]) -> None:
    writer.writerow([_cell(value) for value in row])


async def _chunks(
    header: Sequence[str], rows: Iterable[Sequence[object]] | AsyncIterable[Sequence[object]]
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    count = 0

    def take() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    if isinstance(rows, AsyncIterable):
        async for row in rows:
            _line(writer, row)
            count += 1
            if count % ROWS_PER_CHUNK == 0:
                yield take()
    else:
        for row in rows:
            _line(writer, row)
            count += 1
            if count % ROWS_PER_CHUNK == 0:
                yield take()
    yield take()


def csv_response(
    filename: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]] | AsyncIterable[Sequence[object]],
) -> Stream:
    """A streamed text/csv attachment named `filename`."""
    if not filename.endswith(".csv") or "/" in filename or '"' in filename:
        raise ValueError(f"a CSV file name ends in .csv and has no / or quote: {filename!r}")
    return Stream(
        _chunks(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
