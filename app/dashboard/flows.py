"""``/flows``: the loaded flows, a page per flow, and a vote's live tally (server-sent events)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream, Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import current_user, require
from app.dashboard.exports import csv_stream, pages_of
from app.dashboard.i18n import locale_of
from app.dashboard.live import hub_of
from app.db.models import utcnow
from app.flows.kinds.subscription import SubscriptionFlow
from app.flows.kinds.survey import SurveyFlow
from app.flows.live import LiveFlows
from app.flows.loader import LoadedFlow
from app.reads.members import list_members
from app.reads.overview import flow_states
from app.reads.results import entries_page, entry_columns, flow_activity, kind_results
from app.reads.series import PerMinute, window
from app.reads.tally import latest_votes

MEMBERS = 50  # a list's members on one page
LATEST_ANSWERS = 10  # a survey text step's answers shown, newest first (the export has them all)
ENTRY_PHONES = ("sender", "phone")  # the entry columns that hold a phone number
ENTRY_JSON = ("detail",)  # the event log's decisions: JSON that may quote one


def _flow(request: Request[Any, Any, Any], flow_id: str) -> LoadedFlow:
    live: LiveFlows = request.app.state.flows
    flow = live.current.flows.get(flow_id)
    if flow is None:
        raise NotFoundException(f"No flow {flow_id!r} is loaded; the list of flows shows those that are.")
    return flow


class FlowsController(Controller):
    path = "/flows"
    guards = (require("viewer"),)

    @get("/", name="flows")
    async def index(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine]
    ) -> Template:
        live: LiveFlows = request.app.state.flows
        flows = list(live.current.flows.values())
        hub = hub_of(request)
        figures = {f.id: (await hub.snapshot(f)).total for f in flows if f.kind == "vote"}
        now = utcnow()
        async with db_engine.connect() as conn:
            states = await conn.run_sync(lambda c: flow_states(c, flows, now, figures))
        return Template(template_name="flows.html", context={"flows": states})

    @get("/{flow_id:str}", name="flow")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        later: FromQuery[str | None] = None,
        earlier: FromQuery[str | None] = None,
    ) -> Template:
        """``later`` / ``earlier``: a list's members from a position on, or those before it."""
        flow = _flow(request, flow_id)
        now = utcnow()
        context: dict[str, Any] = {"flow": flow, "now": now, "source": _source(flow)}
        context["log"] = await hub_of(request).flow_log(flow.id)
        async with db_engine.connect() as conn:
            if flow.kind == "vote":
                context["latest"] = await conn.run_sync(lambda c: latest_votes(c, flow.id))
            else:
                context["results"] = await conn.run_sync(
                    lambda c: kind_results(c, flow.definition, members=False, latest=LATEST_ANSWERS)
                )
                if isinstance(flow.definition, SubscriptionFlow):
                    list_id = flow.definition.list_id
                    context["members"] = await conn.run_sync(
                        lambda c: list_members(c, list_id, limit=MEMBERS, start=later, before=earlier)
                    )
                context["activity"] = await conn.run_sync(lambda c: flow_activity(c, flow, now))
        if flow.kind == "vote":
            hub = hub_of(request)
            context["tally"] = await hub.snapshot(flow)
            start, minutes = window(now, hours=1)
            votes = await hub.votes_per_minute(flow).series(db_engine, start, minutes)
            context["per_minute"] = PerMinute(start, minutes, votes, [])
        return Template(template_name="flow.html", context=context)

    @get("/{flow_id:str}/entries.csv", name="flow-entries-export")
    async def export(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> Stream:
        """Every entry as ``smsflows export`` writes it, phone numbers as the page shows them."""
        flow = _flow(request, flow_id)
        columns = entry_columns(flow)
        rows = pages_of(db_engine, lambda c, after: entries_page(c, flow, after=after), columns, cursor=str)
        definition = flow.definition
        return csv_stream(
            f"{flow.id}-entries.csv",
            columns,
            rows,
            reader=current_user(request),
            phones=ENTRY_PHONES,
            json=ENTRY_JSON,
            step_type=definition.step_type if isinstance(definition, SurveyFlow) else None,
        )

    @get("/{flow_id:str}/tally", name="flow-tally")
    async def tally(self, request: Request[Any, Any, Any], flow_id: FromPath[str]) -> Template:
        """The tally alone: what the live stream sends, for a page without it."""
        flow = _vote_flow(request, flow_id)
        return Template(template_name="_tally.html", context={"tally": await hub_of(request).snapshot(flow)})

    @get("/{flow_id:str}/live", name="flow-live")
    async def live(self, request: Request[Any, Any, Any], flow_id: FromPath[str]) -> ServerSentEvent:
        flow = _vote_flow(request, flow_id)
        engine = request.app.template_engine
        assert engine is not None  # create_app always configures templates
        template = engine.get_template("_tally.html")

        hub, language = hub_of(request), locale_of(request)

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            async for tally in hub.watch(flow):
                if tally is None:
                    yield ServerSentEventMessage(comment="still here")
                else:
                    html = hub.fragment(tally, language, lambda t: template.render(tally=t, request=request))
                    yield ServerSentEventMessage(data=html, event="tally", id=tally.last_vote_id)

        return ServerSentEvent(events(), headers={"X-Accel-Buffering": "no"})


def _vote_flow(request: Request[Any, Any, Any], flow_id: str) -> LoadedFlow:
    flow = _flow(request, flow_id)
    if flow.kind != "vote":
        raise NotFoundException(f"Flow {flow_id!r} is a {flow.kind} flow; only vote flows have a tally.")
    return flow


def _source(flow: LoadedFlow) -> str:
    try:
        return flow.path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"(the file {flow.path} cannot be read now: {exc.strerror})"
