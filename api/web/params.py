"""Path parameters shared by the JSON APIs and the pages."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter

# Kring's row ids are PostgreSQL bigints: a larger number names nothing, and
# would not even reach the database (asyncpg refuses to encode it).
ROW_ID_MAX = 2**63 - 1

RowId = Annotated[int, PathParameter(ge=1, le=ROW_ID_MAX)]
