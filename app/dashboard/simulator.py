"""``/simulator``: a phone on the page. Its messages take the webhook's own path (the writer
stores them and runs the flows, the outbox and the dispatcher answer), so what it shows is what
a real phone would get."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.dashboard import i18n
from app.dashboard.actions import audit
from app.dashboard.auth import client_of, require
from app.db.models import utcnow
from app.errors import InvalidMessage, SettingsError
from app.ingest.webhook import take
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import decode_body, normalise_number, parse_mo
from app.mobitex.simulator import SimulationOptions, mo_body
from app.reads.chat import chat
from app.settings import Settings

PHONE = "48600123456"


class PhoneForm(msgspec.Struct):
    sender: str = PHONE
    number: str = ""
    text: str = ""
    ext_id: str = ""


def _number(settings: Settings, number: str | None) -> str:
    return normalise_number(number or settings.mobitex_from or "70120")


def _query(sender: str, number: str) -> str:
    return urlencode({"sender": sender, "number": number})


class SimulatorController(Controller):
    path = "/simulator"
    guards = (require("operator"),)

    @get("/", name="simulator")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        settings: NamedDependency[Settings],
        sender: FromQuery[str] = PHONE,
        number: FromQuery[str | None] = None,
    ) -> Template:
        form = PhoneForm(sender=normalise_number(sender), number=_number(settings, number))
        return await _page(request, db_engine, form, None, 200)

    @get("/chat", name="simulator-chat")
    async def chat_part(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        settings: NamedDependency[Settings],
        sender: FromQuery[str] = PHONE,
        number: FromQuery[str | None] = None,
    ) -> Template:
        """The chat alone: what the page polls to show replies as they are queued and sent."""
        async with db_engine.connect() as conn:
            shown = await conn.run_sync(
                lambda c: chat(c, normalise_number(sender), _number(settings, number))
            )
        return Template(template_name="_chat.html", context={"chat": shown, "now": utcnow()})

    @post("/", status_code=200)
    async def send(
        self,
        request: HTMXRequest,
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        data: Annotated[PhoneForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        tr = i18n.translations(i18n.locale_of(request)).gettext
        form = msgspec.structs.replace(
            data, sender=normalise_number(data.sender), number=_number(settings, data.number)
        )
        sms_id = secrets.token_hex(16)
        try:
            options = SimulationOptions(
                number=form.number, sender=form.sender, text=form.text, ext_id=form.ext_id.strip()
            )
            body = mo_body(options, sms_id, int(time.time()))
            # Checked before it goes in: a typo here should be a form error, not a quarantine entry.
            parse_mo(decode_body(body, options.content_type)[0], settings.mo_max_text)
        except (InvalidMessage, SettingsError) as exc:
            message = tr("The phone cannot send that: %(reason)s") % {"reason": str(exc)}
            return await _page(request, db_engine, form, message, 400)
        writer: GroupWriter = request.app.state.writer
        outcome = await take(
            writer, body, options.content_type, client_of(request), utcnow(), settings.mo_max_text
        )
        audit(
            db_session,
            request,
            "simulator.send",
            sms_id,
            {"sender": form.sender, "number": form.number, "outcome": outcome},
        )
        await db_session.commit()
        if request.htmx:
            fresh = PhoneForm(sender=form.sender, number=form.number, ext_id=form.ext_id)
            return await _page(request, db_engine, fresh, None, 200, "_phone.html")
        return Redirect(f"/simulator?{_query(form.sender, form.number)}", status_code=HTTP_303_SEE_OTHER)


async def _page(
    request: Request[Any, Any, Any],
    engine: AsyncEngine,
    form: PhoneForm,
    error: str | None,
    status: int,
    template: str = "simulator.html",
) -> Template:
    async with engine.connect() as conn:
        shown = await conn.run_sync(lambda c: chat(c, form.sender, form.number))
    return Template(
        template_name=template,
        context={
            "form": form,
            "chat": shown,
            "error": error,
            "now": utcnow(),
            "query": _query(form.sender, form.number),
        },
        status_code=status,
    )
