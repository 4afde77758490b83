"""Who may use the dashboard and what they did: users, the audit log, login attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UTCDateTime

ROLES = ("viewer", "operator", "admin")
"""Each role may do what the ones before it may."""

ID = BigInteger().with_variant(Integer, "sqlite")


class User(Base):
    """A person who signs in to the dashboard; ``session_version`` changes to revoke their sessions."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="ck_user_role"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text, doc="argon2id, with its parameters and salt")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One action that changed state: who, when, what, on what, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_action", "action", "id"))

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64), doc="a user's name, or cli:<login> for commands")
    action: Mapped[str] = mapped_column(String(64), doc="dotted, e.g. users.disable, outbox.requeue")
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text, doc="JSON")
    client: Mapped[str | None] = mapped_column(String(45), doc="the client address, for web actions")


class LoginAttempt(Base):
    """A failed sign-in; counted per address and per name so limits hold across workers."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_address", "address", "at"), Index("ix_login_name", "name", "at"))

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    address: Mapped[str] = mapped_column(String(45))
    name: Mapped[str] = mapped_column(String(64))
