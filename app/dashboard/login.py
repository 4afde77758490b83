"""Signing in and out, and choosing the language."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncSession

from app.dashboard import i18n
from app.dashboard.auth import client_of, current_user, session_data
from app.db import logins, users
from app.db.audit import record
from app.settings import Settings


class LoginForm(msgspec.Struct):
    name: str = ""
    password: str = ""
    next: FromQuery[str] = "/"


def safe_next(target: str | None) -> str:
    """Only a path on this site: ``//evil.example`` and ``https://...`` become ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _form(
    request: Request[Any, Any, Any],
    *,
    next_: str,
    name: str = "",
    error: str | None = None,
    status: int = 200,
) -> Template:
    ended = request.scope.get("smsflows_session_ended") or request.query_params.get("ended")
    return Template(
        template_name="login.html",
        context={"next": safe_next(next_), "name": name, "error": error, "ended": ended},
        status_code=status,
        media_type=MediaType.HTML,
    )


class LoginController(Controller):
    path = "/"

    @get("/login", name="login", media_type=MediaType.HTML)
    async def page(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings], next: FromQuery[str] = "/"
    ) -> Any:
        if current_user(request) is not None:
            return Redirect(safe_next(next), status_code=HTTP_303_SEE_OTHER)
        if not settings.session_secret:
            return _form(request, next_=next, error=_off(request), status=503)
        return _form(request, next_=next)

    @post("/login", status_code=200, media_type=MediaType.HTML)
    async def login(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Any:
        tr = i18n.translations(i18n.locale_of(request)).gettext
        if not settings.session_secret:
            return _form(request, next_=data.next, error=_off(request), status=503)
        address = client_of(request)
        name = data.name.strip()
        limit = await logins.limited(db_session, address, name)
        if limit is not None:
            message = tr("Too many failed sign-ins; try again in %(minutes)d minutes.") % {
                "minutes": limit.minutes
            }
            return _form(request, next_=data.next, name=name, error=message, status=429)
        user = await users.authenticate(db_session, name, data.password)
        if user is None:
            await logins.failed(db_session, address, name)
            await db_session.commit()
            return _form(request, next_=data.next, name=name, error=tr("Wrong name or password."), status=401)
        await logins.succeeded(db_session, name)
        record(db_session, actor=user.name, action="session.login", target=user.name, client=address)
        await db_session.commit()
        request.set_session(session_data(user, settings))
        return Redirect(safe_next(data.next), status_code=HTTP_303_SEE_OTHER)

    @post("/logout", status_code=HTTP_303_SEE_OTHER)
    async def logout(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> Redirect:
        user = current_user(request)
        if user is not None:
            record(
                db_session,
                actor=user.name,
                action="session.logout",
                target=user.name,
                client=client_of(request),
            )
            await db_session.commit()
        request.clear_session()
        return Redirect("/login", status_code=HTTP_303_SEE_OTHER)

    @get("/language/{code:str}", name="language")
    async def language(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        code: FromPath[str],
        next: FromQuery[str] = "/",
    ) -> Redirect:
        cookies = []
        if code in i18n.LOCALES:
            cookies.append(
                Cookie(
                    key=i18n.COOKIE,
                    value=code,
                    max_age=365 * 86400,
                    path="/",
                    samesite="lax",
                    secure=settings.secure_cookies,
                    httponly=True,
                )
            )
        return Redirect(safe_next(next), status_code=HTTP_303_SEE_OTHER, cookies=cookies)


def _off(request: Request[Any, Any, Any]) -> str:
    return i18n.translations(i18n.locale_of(request)).gettext(
        "The dashboard is off: set SMSFLOWS_SESSION_SECRET to a long random secret and restart."
    )
