"""``/send``: a message to one number or to a subscription list.

Three steps: the form, a preview (encoding, parts, recipients after opt-outs) with a
confirmation, and the send. The preview gives the confirmation an idempotency key, so a double
click or a resent form finds the messages the first one queued instead of queueing more.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy import Connection, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.dashboard.actions import audit, done_of, done_redirect
from app.dashboard.auth import require
from app.db.models import Contact, utcnow
from app.errors import InvalidSend, SmsflowsError
from app.flows.broadcast import BroadcastReport, broadcast, list_names, plan
from app.flows.live import LiveFlows
from app.mobitex.encoding import SmsEncoding
from app.mobitex.mo_form import normalise_number
from app.outbox.sending import NewMessage, check_message, queue


class SendForm(msgspec.Struct):
    to: str = ""
    list: str = ""
    text: str = ""
    key: str = ""


class Preview(msgspec.Struct, frozen=True):
    """What confirming will do: to whom, how many, and how each message travels."""

    to: str | None
    list: str | None
    recipients: int
    opted_out: int
    measured: SmsEncoding

    @property
    def parts(self) -> int:
        return self.recipients * self.measured.parts


def _preview(conn: Connection, form: SendForm) -> Preview:
    """Raises the sending modules' own errors (bad number, too long, empty list)."""
    if form.list:
        if not form.text.strip():
            raise InvalidSend("text: the message is empty")
        report, _ = plan(conn, form.list, form.text)
        return Preview(None, form.list, report.recipients, report.opted_out, report.measured)
    to, measured = check_message(NewMessage(to=form.to, text=form.text), utcnow())
    stopped = conn.scalar(select(Contact.opted_out_at).where(Contact.phone == to))
    return Preview(to, None, 0 if stopped else 1, 1 if stopped else 0, measured)


class SendController(Controller):
    path = "/send"
    guards = (require("operator"),)

    @get("/", name="send")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        done: FromQuery[int | None] = None,
        to: FromQuery[str] = "",
        list: FromQuery[str] = "",
        text: FromQuery[str] = "",
    ) -> Template:
        """The form, filled in again when the preview's *Change* comes back to it."""
        form = SendForm(to=to, list=list, text=text)
        return await _form(db_engine, form, None, await done_of(db_session, request, done))

    @get("/preview", name="send-preview")
    async def preview(
        self,
        db_engine: NamedDependency[AsyncEngine],
        to: FromQuery[str] = "",
        list: FromQuery[str] = "",
        text: FromQuery[str] = "",
    ) -> Template:
        form = SendForm(to=to.strip(), list=list.strip(), text=text)
        try:
            async with db_engine.connect() as conn:
                shown = await conn.run_sync(lambda c: _preview(c, form))
        except SmsflowsError as exc:
            return await _form(db_engine, form, str(exc), None, 400)
        confirm = msgspec.structs.replace(form, key=secrets.token_hex(16))
        return Template(template_name="send_preview.html", context={"p": shown, "form": confirm})

    @post("/", status_code=200)
    async def send(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[SendForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        key = data.key or secrets.token_hex(16)
        if data.list:
            message = NewMessage(to="", text=data.text, idempotency_key=key)
            report: BroadcastReport = await broadcast(db_engine, data.list, message)
            detail = {
                "recipients": report.recipients,
                "queued": report.queued,
                "already": report.already,
                "skipped": len(report.skipped),
            }
            entry = audit(db_session, request, "send.list", data.list, detail)
        else:
            live: LiveFlows = request.app.state.flows
            message = NewMessage(to=data.to, text=data.text, idempotency_key=key)
            now = utcnow()
            queued = await db_session.run_sync(
                lambda s: queue(s.connection(), message, now, live.current.flows)
            )
            entry = audit(
                db_session,
                request,
                "send.one",
                normalise_number(message.to),
                {"id": queued.id, "created": queued.created},
            )
        redirect = await done_redirect(db_session, entry, "/send")
        dispatcher = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return redirect


async def _form(
    engine: AsyncEngine, form: SendForm, error: str | None, done: Any, status: int = 200
) -> Template:
    async with engine.connect() as conn:
        lists = await conn.run_sync(list_names)
    return Template(
        template_name="send.html",
        context={"form": form, "lists": lists, "error": error, "done": done},
        status_code=status,
    )
