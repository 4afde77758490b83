"""Dashboard users: adding, signing in (argon2id), disabling, changing passwords.

Disabling a user or changing a password bumps ``session_version``: every session cookie that
carries the old version stops working on its next request, on every worker.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.access_models import ROLES, User
from app.db.audit import record
from app.db.models import utcnow
from app.errors import SmsflowsError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Checking a name that does not exist costs as much as a wrong password: no timing tells names apart.
_DUMMY_HASH = _hasher.hash("not a password anyone has")
MIN_PASSWORD = 8


class UserError(SmsflowsError):
    """A user command cannot be done as asked; the message says what to change."""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def may(role: str, needed: str) -> bool:
    """Whether ``role`` includes what ``needed`` may do (admin > operator > viewer)."""
    return ROLES.index(role) >= ROLES.index(needed)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")


async def get(session: AsyncSession, name: str) -> User | None:
    found: User | None = await session.scalar(select(User).where(User.name == name))
    return found


async def require(session: AsyncSession, name: str) -> User:
    user = await get(session, name)
    if user is None:
        raise UserError(f"no user named {name!r}: see `smsflows users list`")
    return user


async def add(session: AsyncSession, name: str, role: str, password: str, *, actor: str) -> User:
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise UserError("a user name is 1 to 64 characters without spaces")
    check_role(role)
    _check_password(password)
    if await get(session, name) is not None:
        raise UserError(f"a user named {name!r} exists already: use `smsflows users passwd {name}`")
    user = User(
        name=name,
        role=role,
        password_hash=_hasher.hash(password),
        active=True,
        session_version=1,
        created_at=utcnow(),
    )
    session.add(user)
    record(session, actor=actor, action="users.add", target=name, detail={"role": role})
    return user


async def authenticate(session: AsyncSession, name: str, password: str) -> User | None:
    """The active user with that name and password, or None (the same time either way)."""
    user = await get(session, name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    return user


async def set_password(session: AsyncSession, name: str, password: str, *, actor: str) -> User:
    _check_password(password)
    user = await require(session, name)
    user.password_hash = _hasher.hash(password)
    user.session_version += 1
    record(session, actor=actor, action="users.passwd", target=name)
    return user


async def set_active(session: AsyncSession, name: str, active: bool, *, actor: str) -> User:
    user = await require(session, name)
    user.active = active
    user.session_version += 1
    record(session, actor=actor, action="users.enable" if active else "users.disable", target=name)
    return user


async def set_role(session: AsyncSession, name: str, role: str, *, actor: str) -> User:
    check_role(role)
    user = await require(session, name)
    before, user.role = user.role, role
    record(session, actor=actor, action="users.role", target=name, detail={"from": before, "to": role})
    return user


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.name))).all())


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def with_password(session: AsyncSession, passwords: tuple[str, ...]) -> list[str]:
    """The active users whose password is one of ``passwords`` (to refuse well-known ones)."""
    found = []
    for user in await session.scalars(select(User).where(User.active.is_(True)).order_by(User.name)):
        for password in passwords:
            try:
                _hasher.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                continue
            found.append(user.name)
            break
    return found
