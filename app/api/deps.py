"""What handlers get from the application: the request's database session and a way to run the
shared read queries (``app.reads``) in it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

P = ParamSpec("P")
T = TypeVar("T")


def read(
    session: AsyncSession, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
) -> Awaitable[T]:
    """Run ``query(connection, ...)`` in the request's session (and its transaction, if one is open)."""
    return session.run_sync(lambda sync: query(sync.connection(), *args, **kwargs))
