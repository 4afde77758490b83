"""Winner draws: one row per round of a flow, and the entries it picked.

The unique key (flow, round) is what makes a round happen once: two draws started at the same
moment both try to take it, and the database lets one of them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UTCDateTime

ID = BigInteger().with_variant(Integer, "sqlite")
DRAW_STATUSES = ("committed", "drawn")
PICK_ROLES = ("winner", "reserve")


class Draw(Base):
    """A round of a flow's draw: its rule, the seed's commitment, and once drawn the record."""

    __tablename__ = "draws"
    __table_args__ = (
        UniqueConstraint("flow_id", "round", name="uq_draw_round"),
        CheckConstraint(f"status IN {DRAW_STATUSES!r}", name="ck_draw_status"),
        CheckConstraint("round >= 1", name="ck_draw_round"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text, doc="why a further round was drawn")
    status: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(Text, doc="JSON: who could win (see app/draws/entries.py)")
    algorithm: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str | None] = mapped_column(Text, doc="revealed with the result")
    seed_source: Mapped[str] = mapped_column(String(16), doc="given / generated")
    seed_sha256: Mapped[str] = mapped_column(String(64), doc="the commitment, stored before the draw")
    winners: Mapped[int] = mapped_column(Integer)
    reserves: Mapped[int] = mapped_column(Integer)
    entries_count: Mapped[int | None] = mapped_column(Integer)
    entries_sha256: Mapped[str | None] = mapped_column(String(64))
    record: Mapped[str | None] = mapped_column(Text, doc="the exported record (JSON), phones masked")
    created_by: Mapped[str] = mapped_column(String(128))
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DrawPick(Base):
    """A winner or a reserve of a round, with the phone to tell (the record masks it)."""

    __tablename__ = "draw_picks"
    __table_args__ = (
        UniqueConstraint("draw_id", "position", name="uq_pick_position"),
        UniqueConstraint("draw_id", "entry_id", name="uq_pick_entry"),
        CheckConstraint(f"role IN {PICK_ROLES!r}", name="ck_pick_role"),
        Index("ix_pick_phone", "phone"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    draw_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(Integer, doc="1.. in the order drawn, reserves after winners")
    role: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(20))
    outbox_id: Mapped[int | None] = mapped_column(BigInteger, doc="the message that told them")
