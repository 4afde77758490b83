"""The integers the API takes, bounded to what the database can hold: too big is a 400, not a 500."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from app.db.models import MAX_ID

RowId = Annotated[int, PathParameter(ge=1, le=MAX_ID, description=f"a row id, 1 to {MAX_ID}")]
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="page size")]
Cursor = Annotated[
    int | None,
    QueryParameter(ge=1, le=MAX_ID, description="next_cursor of the previous page"),
]
