"""``/failures``: quarantined requests (repair and re-ingest, discard), failed inbound messages
(replay one, or a flow's all), failed sends (queue them again in bulk).

The work is done by the same functions the API and the CLI use; every action is audited, the
bulk ones ask for confirmation first and the page after says what was done.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Stream, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.dashboard import i18n
from app.dashboard.actions import audit, done_of, done_redirect
from app.dashboard.auth import current_user, require
from app.dashboard.exports import csv_stream, pages_of
from app.dashboard.i18n import N_
from app.db.models import InboundMessage
from app.flows.live import LiveFlows
from app.flows.replay import replay, replay_message
from app.ingest import quarantine
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import FIELDS
from app.outbox.requeue import count_failed, failed_reasons, requeue_failed
from app.reads.failures import failures, quarantined
from app.reads.messages import list_quarantine
from app.settings import Settings

Form = Body(media_type=RequestEncodingType.URL_ENCODED)
QUARANTINE_COLUMNS = ("id", "received_at", "client_ip", "content_type", "reason", "raw_text", "status")


class RepairForm(msgspec.Struct):
    number: str = ""
    sender: str = ""
    text: str = ""
    sms_id: str = ""
    smcsc: str = ""
    time: str = ""
    ext_id: str = ""


class ReplayForm(msgspec.Struct):
    flow: str = ""


class RequeueForm(msgspec.Struct):
    error: str = ""
    flow: str = ""


def _flows(request: Request[Any, Any, Any]) -> LiveFlows:
    live: LiveFlows = request.app.state.flows
    return live


class FailuresController(Controller):
    path = "/failures"
    guards = (require("operator"),)

    @get("/", name="failures")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        before: FromQuery[int | None] = None,
        done: FromQuery[int | None] = None,
    ) -> Template:
        async with db_engine.connect() as conn:
            found = await conn.run_sync(lambda c: failures(c, before=before))
            reasons = await conn.run_sync(failed_reasons)
        return Template(
            template_name="failures.html",
            context={"f": found, "reasons": reasons, "done": await done_of(db_session, request, done)},
        )

    @get("/quarantine.csv", name="quarantine-export")
    async def quarantine_csv(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine]
    ) -> Stream:
        """Every held request, newest first, with its raw body as text (for operators: it holds
        the number)."""
        rows = pages_of(
            db_engine,
            lambda c, cursor: list_quarantine(c, status="held", limit=1000, before=cursor),
            QUARANTINE_COLUMNS,
        )
        return csv_stream("quarantine.csv", QUARANTINE_COLUMNS, rows, reader=current_user(request))

    @get("/quarantine/{qid:int}", name="quarantined")
    async def held(
        self,
        db_engine: NamedDependency[AsyncEngine],
        qid: FromPath[int],
        confirm: FromQuery[str | None] = None,
    ) -> Template:
        return await _repair_page(db_engine, qid, None, None, confirm == "discard")

    @post("/quarantine/{qid:int}/reingest", status_code=200)
    async def reingest(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        qid: FromPath[int],
        data: Annotated[RepairForm, Form],
    ) -> Template | Redirect:
        repair = {name: getattr(data, name).strip() for name in FIELDS}
        try:
            writer: GroupWriter = request.app.state.writer
            sms_id = await quarantine.reingest(db_session, writer, qid, repair, settings.mo_max_text)
        except quarantine.StillInvalid as exc:
            await db_session.rollback()
            tr = i18n.translations(i18n.locale_of(request)).gettext
            error = tr("Not re-ingested: %(reason)s") % {"reason": str(exc)}
            return await _repair_page(db_engine, qid, data, error, False, 400)
        # No such request (404) or resolved already (409): the error page says which.
        entry = audit(db_session, request, "quarantine.reingest", str(qid), {"sms_id": sms_id})
        return await done_redirect(db_session, entry, "/failures")

    @post("/quarantine/{qid:int}/discard", status_code=200)
    async def discard(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession], qid: FromPath[int]
    ) -> Redirect:
        await quarantine.discard(db_session, qid)  # unknown: 404; resolved already: 409
        entry = audit(db_session, request, "quarantine.discard", str(qid))
        return await done_redirect(db_session, entry, "/failures")

    @post("/inbound/{sms_id:str}/replay", status_code=200)
    async def replay_one(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        sms_id: FromPath[str],
    ) -> Redirect:
        flows = _flows(request).current
        status = await db_session.run_sync(lambda s: replay_message(s.connection(), flows, sms_id))
        if status is None:
            await db_session.rollback()
            known = await db_session.scalar(
                select(InboundMessage.status).where(InboundMessage.sms_id == sms_id)
            )
            if known is None:
                raise NotFoundException(f"no inbound message with sms_id {sms_id!r}")
            raise ClientException(
                f"message {sms_id} is {known}: only failed, ignored or received messages are replayed",
                status_code=409,
            )
        entry = audit(db_session, request, "inbound.replay", sms_id, {"status": status})
        return await done_redirect(db_session, entry, "/failures")

    @get("/replay", name="replay-confirm")
    async def replay_confirm(
        self, db_engine: NamedDependency[AsyncEngine], flow: FromQuery[str] = ""
    ) -> Template:
        async with db_engine.connect() as conn:
            found = await conn.run_sync(failures)
        counts = {c.flow_id or "": c.count for c in found.failed_in_by_flow}
        count = counts.get(flow, 0) if flow else found.failed_in_total
        return _confirm(
            N_("Replay failed messages"),
            N_("%(count)s failed message(s) of %(flow)s go through the flows as they are now; "
               "those that succeed get their replies.") if flow else
            N_("%(count)s failed message(s) go through the flows as they are now; "
               "those that succeed get their replies."),
            {"count": count, "flow": flow},
            "/failures/replay",
            {"flow": flow},
            N_("Replay them"),
            count,
        )  # fmt: skip

    @post("/replay", status_code=200)
    async def replay_flow(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[ReplayForm, Form],
    ) -> Redirect:
        summary = await replay(db_engine, _flows(request).current, ["failed"], data.flow or None)
        detail = {"messages": summary.messages, "outcomes": summary.outcomes, "flow": data.flow or None}
        entry = audit(db_session, request, "inbound.replay_flow", data.flow or None, detail)
        return await done_redirect(db_session, entry, "/failures")

    @get("/requeue", name="requeue-confirm")
    async def requeue_confirm(
        self, db_engine: NamedDependency[AsyncEngine], error: FromQuery[str] = "", flow: FromQuery[str] = ""
    ) -> Template:
        async with db_engine.connect() as conn:
            count = await conn.run_sync(lambda c: count_failed(c, error=error or None, flow=flow or None))
        return _confirm(
            N_("Send failed messages again"),
            N_("%(count)s failed send(s) whose error contains “%(error)s” go back to the outbox "
               "and are sent again now.") if error else
            N_("%(count)s failed send(s) go back to the outbox and are sent again now."),
            {"count": count, "error": error},
            "/failures/requeue",
            {"error": error, "flow": flow},
            N_("Send them again"),
            count,
        )  # fmt: skip

    @post("/requeue", status_code=200)
    async def requeue(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: Annotated[RequeueForm, Form],
    ) -> Redirect:
        error, flow = data.error or None, data.flow or None
        moved = await db_session.run_sync(lambda s: requeue_failed(s.connection(), error=error, flow=flow))
        entry = audit(db_session, request, "outbox.requeue", error, {"count": moved, "flow": flow})
        redirect = await done_redirect(db_session, entry, "/failures")
        dispatcher = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return redirect


def _confirm(
    title: str,
    sentence: str,
    values: dict[str, Any],
    action: str,
    fields: dict[str, str],
    button: str,
    count: int,
) -> Template:
    return Template(
        template_name="confirm.html",
        context={
            "title": title,
            "sentence": sentence,
            "values": values,
            "action": action,
            "fields": fields,
            "button": button,
            "count": count,
            "back": "/failures",
        },
    )


async def _repair_page(
    engine: AsyncEngine,
    qid: int,
    form: RepairForm | None,
    error: str | None,
    confirm_discard: bool,
    status: int = 200,
) -> Template:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda c: quarantined(c, qid))
    if found is None:
        raise NotFoundException(f"no quarantined request {qid}")
    if form is None:  # what the raw body says, to correct
        form = msgspec.convert({k: v for k, v in found.fields.items() if k in FIELDS}, RepairForm)
    return Template(
        template_name="quarantined.html",
        context={
            "q": found,
            "form": form,
            "fields": FIELDS,
            "error": error,
            "confirm_discard": confirm_discard,
        },
        status_code=status,
    )
