"""``/contacts``: a phone's whole conversation as one thread, what it is part of, its STOP state;
operators may opt it out or back in (asked first, audited)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Stream, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.dashboard.actions import audit, done_of, done_redirect
from app.dashboard.auth import current_user, require
from app.dashboard.exports import csv_stream
from app.db.models import Contact, utcnow
from app.flows.kinds.optout import set_opted_out
from app.mobitex.mo_form import normalise_number
from app.reads.contacts import contact_history

THREAD = 200
THREAD_COLUMNS = ("direction", "id", "at", "text", "status", "flow_id")


class OptForm(msgspec.Struct):
    set: str = ""


class ContactsController(Controller):
    path = "/contacts"
    guards = (require("viewer"),)

    @get("/", name="contacts")
    async def search(
        self, db_session: NamedDependency[AsyncSession], phone: FromQuery[str] = ""
    ) -> Template | Redirect:
        """Search by number: a whole number opens the contact, the start of one lists matches."""
        wanted = normalise_number(phone) if phone.strip() else ""
        matches: list[Any] = []
        if wanted:
            exact = await db_session.scalar(select(Contact.phone).where(Contact.phone == wanted))
            if exact is not None:
                return Redirect(f"/contacts/{exact}", status_code=HTTP_303_SEE_OTHER)
            matches = list(
                await db_session.scalars(
                    select(Contact)
                    .where(Contact.phone.startswith(phone.strip().lstrip("+"), autoescape=True))
                    .order_by(Contact.phone)
                    .limit(50)
                )
            )
        return Template(template_name="contacts.html", context={"phone": phone, "matches": matches})

    @get("/{phone:str}", name="contact")
    async def contact(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        phone: FromPath[str],
        done: FromQuery[int | None] = None,
    ) -> Template | Stream:
        if phone.endswith(".csv"):
            return await _thread_csv(request, db_engine, phone.removesuffix(".csv"))
        async with db_engine.connect() as conn:
            history = await conn.run_sync(lambda c: contact_history(c, normalise_number(phone), limit=THREAD))
        return Template(
            template_name="contact.html",
            context={"h": history, "done": await done_of(db_session, request, done)},
        )

    @get("/{phone:str}/optout", name="contact-optout-confirm", guards=[require("operator")])
    async def confirm(
        self, db_engine: NamedDependency[AsyncEngine], phone: FromPath[str], set: FromQuery[str] = "out"
    ) -> Template:
        async with db_engine.connect() as conn:
            history = await conn.run_sync(lambda c: contact_history(c, normalise_number(phone), limit=1))
        return Template(template_name="contact_optout.html", context={"h": history, "out": set != "in"})

    @post("/{phone:str}/optout", status_code=200, guards=[require("operator")])
    async def optout(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        phone: FromPath[str],
        data: Annotated[OptForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        number, out, now = normalise_number(phone), data.set != "in", utcnow()
        changed = await db_session.run_sync(lambda s: set_opted_out(s.connection(), number, out, now))
        action = "contacts.optout" if out else "contacts.optin"
        entry = audit(db_session, request, action, number, {"changed": changed})
        return await done_redirect(db_session, entry, f"/contacts/{number}")


async def _thread_csv(request: Request[Any, Any, Any], engine: AsyncEngine, phone: str) -> Stream:
    """The contact's thread as CSV: every message in and out, newest first (no column holds
    the number: it is the contact's own)."""
    number = normalise_number(phone)

    async def rows() -> Any:
        async with engine.connect() as conn:
            # A phone's thread is small next to a whole table; read whole, as the page does.
            history = await conn.run_sync(lambda c: contact_history(c, number, limit=1_000_000))
        for entry in history.thread:
            yield [getattr(entry, name) for name in THREAD_COLUMNS]

    return csv_stream(f"contact-{number}.csv", THREAD_COLUMNS, rows(), reader=current_user(request))
