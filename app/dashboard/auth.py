"""Who is signed in: signed session cookies, the user behind them, and the role guards.

The cookie holds the user's id, their ``session_version`` and an expiry; each request checks
them against the database, so disabling a user or changing a password ends their sessions on
every worker at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException, ServiceUnavailableException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.access_models import User
from app.db.users import may
from app.ingest.allowlist import client_address
from app.settings import Settings

SESSION_COOKIE = "smsflows_session"

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


class SignedIn(msgspec.Struct, frozen=True):
    """The user of a request, detached from the database session that loaded them."""

    id: int
    name: str
    role: str

    def may(self, needed: str) -> bool:
        return may(self.role, needed)


class LoginRequired(NotAuthorizedException):
    """Nobody is signed in (or the session ended): the dashboard sends the browser to /login."""


def session_config(settings: Settings) -> CookieBackendConfig:
    # The cookie backend wants a 32-byte key; any length of secret maps onto one. Without a
    # secret nobody can sign in (see `require`), so a throw-away key is enough.
    secret = settings.session_secret or secrets.token_hex(32)
    return CookieBackendConfig(
        secret=hashlib.sha256(secret.encode()).digest(),
        key=SESSION_COOKIE,
        max_age=settings.session_hours * 3600,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


class CookieSessions(SessionMiddleware[ClientSideSessionBackend]):
    """Litestar's cookie sessions, with the cipher made when the route is built (it cannot be copied)."""

    def __init__(self, app: ASGIApp, config: CookieBackendConfig) -> None:
        super().__init__(app, backend=ClientSideSessionBackend(config))


def session_data(user: User, settings: Settings) -> dict[str, Any]:
    return {
        "uid": user.id,
        "ver": user.session_version,
        "exp": int(time.time()) + settings.session_hours * 3600,
    }


class LoadUser(ASGIMiddleware):
    """Puts the signed-in user (or None) in ``scope["user"]``; a stale session is emptied."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = await _load(scope)
        await next_app(scope, receive, send)


async def _load(scope: Scope) -> SignedIn | None:
    session = scope.get("session")
    if not isinstance(session, dict) or "uid" not in session:
        return None
    uid, version, expires = session.get("uid"), session.get("ver"), session.get("exp")
    if not isinstance(uid, int) or not isinstance(expires, int) or expires < time.time():
        session.clear()
        scope["smsflows_session_ended"] = "expired"  # type: ignore[typeddict-unknown-key]
        return None
    sessions: async_sessionmaker[AsyncSession] = scope["litestar_app"].state.sessions
    async with sessions() as db:
        user = await db.get(User, uid)
    if user is None or not user.active or user.session_version != version:
        session.clear()
        scope["smsflows_session_ended"] = "revoked"  # type: ignore[typeddict-unknown-key]
        return None
    return SignedIn(id=user.id, name=user.name, role=user.role)


def current_user(connection: ASGIConnection[Any, Any, Any, Any]) -> SignedIn | None:
    user = connection.scope.get("user")
    return user if isinstance(user, SignedIn) else None


def require(role: str) -> Guard:
    """A guard: the page needs a signed-in user whose role includes ``role``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings: Settings = connection.app.state.settings
        if not settings.session_secret:
            raise ServiceUnavailableException(
                "The dashboard is off: set SMSFLOWS_SESSION_SECRET to a long random secret and restart."
            )
        user = current_user(connection)
        if user is None:
            raise LoginRequired("Sign in to see this page.")
        if not user.may(role):
            raise PermissionDeniedException(
                f"This page is for the {role} role or above; you are signed in as {user.role}. "
                "Ask an admin to change your role."
            )

    return guard


def client_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The address a dashboard request came from, behind trusted proxies as for the webhook."""
    settings: Settings = connection.app.state.settings
    peer = connection.client.host if connection.client else None
    forwarded = connection.headers.get("x-forwarded-for")
    return client_address(peer, forwarded, settings.proxy_networks) or "unknown"
