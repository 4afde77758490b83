"""The links of public results boards: revocable, and stored only as a hash of their token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UTCDateTime

ID = BigInteger().with_variant(Integer, "sqlite")


class BoardLink(Base):
    """A link to a flow's public results board; only the token's SHA-256 is stored."""

    __tablename__ = "board_links"
    __table_args__ = (
        UniqueConstraint("token_sha256", name="uq_board_token"),
        Index("ix_board_flow", "flow_id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(64))
    token_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
