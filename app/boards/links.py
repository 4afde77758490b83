"""Board links: an unguessable token per link, stored only as its SHA-256, revocable at any time.

Whoever holds the link sees the board, without signing in; nobody can make one up (192 random
bits), and the database never holds a working token, so a copy of it opens no board. Creating
and revoking a link go in the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import msgspec
from sqlalchemy import Connection, insert, select, update

from app.db.audit import record_in
from app.db.board_models import BoardLink
from app.db.models import utcnow
from app.errors import SmsflowsError

TOKEN_PREFIX = "b_"


class LinkError(SmsflowsError):
    """No such link, or it was revoked already."""

    status_code = 409


class BoardLinkOut(msgspec.Struct, frozen=True):
    id: int
    flow: str
    label: str | None
    created_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class NewLink(msgspec.Struct, frozen=True):
    """A link just made: the only time its token is shown."""

    link: BoardLinkOut
    token: str
    path: str
    """The board's page; ``/api/board/<token>`` gives its figures as JSON."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _out(row: BoardLink) -> BoardLinkOut:
    return BoardLinkOut(
        id=row.id,
        flow=row.flow_id,
        label=row.label,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_by=row.revoked_by,
        revoked_at=row.revoked_at,
    )


def create_link(conn: Connection, flow_id: str, label: str | None, actor: str) -> NewLink:
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    now = utcnow()
    link_id = conn.execute(
        insert(BoardLink)
        .values(flow_id=flow_id, token_sha256=_digest(token), label=label, created_by=actor, created_at=now)
        .returning(BoardLink.id)
    ).scalar_one()
    record_in(
        conn, actor=actor, action="boards.create", target=flow_id, detail={"link": link_id, "label": label}
    )
    out = BoardLinkOut(int(link_id), flow_id, label, actor, now, None, None)
    return NewLink(link=out, token=token, path=f"/board/{token}")


def revoke_link(conn: Connection, link_id: int, actor: str) -> BoardLinkOut:
    row = conn.execute(select(BoardLink).where(BoardLink.id == link_id)).first()
    if row is None:
        raise LinkError(f"no board link {link_id}; `smsflows board list` shows them")
    if row.revoked_at is not None:
        when = f"{row.revoked_at:%Y-%m-%d %H:%M} UTC"
        raise LinkError(f"board link {link_id} was revoked already, by {row.revoked_by} at {when}")
    now = utcnow()
    conn.execute(update(BoardLink).where(BoardLink.id == link_id).values(revoked_by=actor, revoked_at=now))
    record_in(conn, actor=actor, action="boards.revoke", target=row.flow_id, detail={"link": link_id})
    return BoardLinkOut(row.id, row.flow_id, row.label, row.created_by, row.created_at, actor, now)


def list_links(conn: Connection, flow_id: str | None = None) -> list[BoardLinkOut]:
    query = select(BoardLink).order_by(BoardLink.id)
    if flow_id is not None:
        query = query.where(BoardLink.flow_id == flow_id)
    return [_out(r) for r in conn.execute(query).all()]  # type: ignore[arg-type]


def flow_of(conn: Connection, token: str) -> str | None:
    """The flow a live link shows; None for a token that is unknown or revoked (alike)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    return conn.scalar(
        select(BoardLink.flow_id).where(
            BoardLink.token_sha256 == _digest(token), BoardLink.revoked_at.is_(None)
        )
    )
