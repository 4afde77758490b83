"""What the pages that change state share: the audit entry of an action, and the page after it.

An action is written to the audit log in the transaction of the change it describes. The page
after it is a redirect (so a reload does not repeat it) to ``?done=<audit entry id>``; the page
reads that entry back and says what was done. Only the signer's own entries are shown, so a
shared link cannot put words in somebody else's page.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.response import Redirect
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.dashboard.auth import SignedIn, client_of, current_user
from app.db.access_models import AuditEntry
from app.db.audit import record


class Done(msgspec.Struct, frozen=True):
    """An action the signed-in user just did, as the next page reports it."""

    action: str
    target: str | None
    detail: dict[str, Any]


def signed_in(request: Request[Any, Any, Any]) -> SignedIn:
    user = current_user(request)
    assert user is not None  # the controllers' guards let nobody else in
    return user


def audit(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record ``action`` by the signed-in user; it commits with the caller's change."""
    return record(
        session,
        actor=signed_in(request).name,
        action=action,
        target=target,
        detail=detail,
        client=client_of(request),
    )


async def done_redirect(session: AsyncSession, entry: AuditEntry, path: str) -> Redirect:
    """Commit, then send the browser to ``path`` saying what ``entry`` did."""
    await session.flush()
    entry_id = entry.id
    await session.commit()
    sep = "&" if "?" in path else "?"
    return Redirect(f"{path}{sep}done={entry_id}", status_code=HTTP_303_SEE_OTHER)


async def done_of(session: AsyncSession, request: Request[Any, Any, Any], done: int | None) -> Done | None:
    """The entry ``done`` names, if the signed-in user made it."""
    if done is None:
        return None
    entry = await session.scalar(
        select(AuditEntry).where(AuditEntry.id == done, AuditEntry.actor == signed_in(request).name)
    )
    if entry is None:
        return None
    detail = msgspec.json.decode(entry.detail) if entry.detail else {}
    return Done(action=entry.action, target=entry.target, detail=detail if isinstance(detail, dict) else {})
