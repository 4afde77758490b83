"""``/users`` (admin): who may sign in, with which role; the same functions as ``smsflows users``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from app.dashboard import i18n
from app.dashboard.actions import Done, done_of, done_redirect, signed_in
from app.dashboard.auth import client_of, require
from app.dashboard.i18n import N_
from app.db import users as store
from app.db.access_models import ROLES, AuditEntry
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


class ActiveForm(msgspec.Struct):
    active: str = ""


class UsersController(Controller):
    path = "/users"
    guards = (require("admin"),)

    @get("/", name="users")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        done: FromQuery[int | None] = None,
    ) -> Template:
        return await _page(request, db_session, await done_of(db_session, request, done))

    @post("/", status_code=200)
    async def add(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[NewUser, Form],
    ) -> Template | Redirect:
        return await _change(
            request,
            db_session,
            lambda me: store.add(db_session, data.name, data.role, data.password, actor=me),
            data,
        )

    @post("/{name:str}/role", status_code=200)
    async def role(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: FromPath[str],
        data: Annotated[RoleForm, Form],
    ) -> Template | Redirect:
        if name == signed_in(request).name and data.role != "admin":
            return await _refuse(
                request, db_session, "You cannot take the admin role from yourself: ask another admin."
            )
        return await _change(
            request, db_session, lambda me: store.set_role(db_session, name, data.role, actor=me)
        )

    @post("/{name:str}/active", status_code=200)
    async def active(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: FromPath[str],
        data: Annotated[ActiveForm, Form],
    ) -> Template | Redirect:
        enable = data.active == "1"
        if name == signed_in(request).name and not enable:
            return await _refuse(request, db_session, N_("You cannot disable yourself: ask another admin."))
        return await _change(
            request, db_session, lambda me: store.set_active(db_session, name, enable, actor=me)
        )

    @post("/{name:str}/password", status_code=200)
    async def password(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: FromPath[str],
        data: Annotated[PasswordForm, Form],
    ) -> Template | Redirect:
        return await _change(
            request, db_session, lambda me: store.set_password(db_session, name, data.password, actor=me)
        )


async def _change(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    change: Callable[[str], Awaitable[object]],
    form: NewUser | None = None,
) -> Template | Redirect:
    """Run ``change`` (one of the user store's functions, which audits itself) as the signed-in admin."""
    try:
        await change(signed_in(request).name)
    except UserError as exc:
        await session.rollback()
        return await _page(request, session, None, str(exc), form, 400)
    entry = await _last_entry(session)
    entry.client = client_of(request)
    return await done_redirect(session, entry, "/users")


async def _last_entry(session: AsyncSession) -> AuditEntry:
    """The audit entry the store's function just added to the session."""
    added = [obj for obj in session.new if isinstance(obj, AuditEntry)]
    assert added, "every user change is audited"
    return added[-1]


async def _refuse(request: Request[Any, Any, Any], session: AsyncSession, message: str) -> Template:
    tr = i18n.translations(i18n.locale_of(request)).gettext
    return await _page(request, session, None, tr(message), None, 400)


async def _page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    done: Done | None,
    error: str | None = None,
    form: NewUser | None = None,
    status: int = 200,
) -> Template:
    users = await store.list_users(session)
    return Template(
        template_name="users.html",
        context={
            "users": users,
            "roles": ROLES,
            "me": signed_in(request).name,
            "done": done,
            "error": error,
            "form": form or NewUser(),
        },
        status_code=status,
    )
