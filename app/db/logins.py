"""Sign-in limits: failed attempts are rows, so every worker and machine sees the same count."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.access_models import LoginAttempt
from app.db.models import utcnow

WINDOW = timedelta(minutes=15)
PER_NAME = 5
"""Failures for one user name within WINDOW before that name is locked for the rest of it."""
PER_ADDRESS = 20
"""Failures from one address within WINDOW (guessing many names) before it is refused."""


class Limited(msgspec.Struct, frozen=True):
    by: str  # "address" or "name"
    minutes: int


async def limited(session: AsyncSession, address: str, name: str) -> Limited | None:
    """Whether a sign-in from ``address`` as ``name`` must be refused now, and for how long."""
    since = utcnow() - WINDOW
    for column, value, limit, by in (
        (LoginAttempt.address, address, PER_ADDRESS, "address"),
        (LoginAttempt.name, name, PER_NAME, "name"),
    ):
        failures, oldest = (
            await session.execute(
                select(func.count(), func.min(LoginAttempt.at)).where(
                    column == value, LoginAttempt.at >= since
                )
            )
        ).one()
        if failures >= limit and oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=since.tzinfo)
            left = oldest + WINDOW - utcnow()
            return Limited(by=by, minutes=max(1, int(left.total_seconds() // 60) + 1))
    return None


async def failed(session: AsyncSession, address: str, name: str) -> None:
    session.add(LoginAttempt(at=utcnow(), address=address, name=name[:64]))
    # Keep the table small: what is older than the window no longer counts.
    await session.execute(delete(LoginAttempt).where(LoginAttempt.at < utcnow() - WINDOW))


async def succeeded(session: AsyncSession, name: str) -> None:
    """A good password clears the name's failures (the address's stay: they may be guesses)."""
    await session.execute(delete(LoginAttempt).where(LoginAttempt.name == name))
