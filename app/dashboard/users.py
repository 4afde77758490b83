"""``/users``: admins add users, change roles, disable and enable them; every change is audited."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from app.dashboard import i18n
from app.dashboard.auth import client_of, current_user, require
from app.dashboard.i18n import N_
from app.db import users as store
from app.db.access_models import ROLES
from app.db.users import UserError

Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class NewUser(msgspec.Struct):
    name: str = ""
    role: str = "viewer"
    password: str = ""


class RoleForm(msgspec.Struct):
    role: str = ""


class PasswordForm(msgspec.Struct):
    password: str = ""


def _done(message: str, name: str) -> Redirect:
    """Back to the list, which says what was done (the address carries it, not a session)."""
    return Redirect(f"/users?{urlencode({'done': message, 'name': name})}", status_code=HTTP_303_SEE_OTHER)


class UsersController(Controller):
    path = "/users"
    guards = (require("admin"),)

    @get("/", name="users")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        done: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
    ) -> Template:
        return await _list(request, db_session, done=done, name=name)

    @post("/", name="users-add", status_code=200)
    async def add(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[NewUser, Form],
    ) -> Any:
        actor = _actor(request)
        try:
            await store.add(db_session, data.name, data.role, data.password, actor=actor)
        except UserError as exc:
            return await _list(request, db_session, error=str(exc), form=data, status=400)
        _client(db_session, request)
        await db_session.commit()
        return _done("added", data.name.strip())

    @post("/{name:str}/role", name="users-role", status_code=200)
    async def role(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: FromPath[str],
        data: Annotated[RoleForm, Form],
    ) -> Any:
        if name == _actor(request):
            return await _list(
                request,
                db_session,
                error=N_("You cannot change your own role; ask another admin."),
                status=400,
            )
        try:
            await store.set_role(db_session, name, data.role, actor=_actor(request))
        except UserError as exc:
            return await _list(request, db_session, error=str(exc), status=400)
        _client(db_session, request)
        await db_session.commit()
        return _done("role", name)

    @post("/{name:str}/disable", name="users-disable", status_code=200)
    async def disable(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession], name: FromPath[str]
    ) -> Any:
        if name == _actor(request):
            return await _list(
                request, db_session, error=N_("You cannot disable yourself; ask another admin."), status=400
            )
        return await _set_active(request, db_session, name, False)

    @post("/{name:str}/enable", name="users-enable", status_code=200)
    async def enable(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession], name: FromPath[str]
    ) -> Any:
        return await _set_active(request, db_session, name, True)

    @post("/{name:str}/password", name="users-password", status_code=200)
    async def password(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: FromPath[str],
        data: Annotated[PasswordForm, Form],
    ) -> Any:
        """A new password; the user's open sessions end (a forgotten or leaked one)."""
        try:
            await store.set_password(db_session, name, data.password, actor=_actor(request))
        except UserError as exc:
            return await _list(request, db_session, error=str(exc), status=400)
        _client(db_session, request)
        await db_session.commit()
        return _done("password", name)


def _actor(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    assert user is not None  # the guard let only admins in
    return user.name


def _client(db_session: AsyncSession, request: Request[Any, Any, Any]) -> None:
    """The address goes on the entries the store just recorded (it knows nothing of requests)."""
    for entry in db_session.new:
        if getattr(entry, "__tablename__", None) == "audit_log" and entry.client is None:
            entry.client = client_of(request)


async def _set_active(
    request: Request[Any, Any, Any], db_session: AsyncSession, name: str, active: bool
) -> Any:
    try:
        await store.set_active(db_session, name, active, actor=_actor(request))
    except UserError as exc:
        return await _list(request, db_session, error=str(exc), status=400)
    _client(db_session, request)
    await db_session.commit()
    return _done("enabled" if active else "disabled", name)


async def _list(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    *,
    done: str | None = None,
    name: str | None = None,
    error: str | None = None,
    form: NewUser | None = None,
    status: int = 200,
) -> Template:
    return Template(
        template_name="users.html",
        context={
            "users": await store.list_users(db_session),
            "roles": ROLES,
            "done": done if done in ("added", "role", "enabled", "disabled", "password") else None,
            "done_name": name,
            # Our own sentences are translated; a store's message (naming what was typed) stays as is.
            "error": i18n.translations(i18n.locale_of(request)).gettext(error) if error else None,
            "form": form or NewUser(),
        },
        status_code=status,
    )
