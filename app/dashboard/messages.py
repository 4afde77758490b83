"""``/messages``: inbound and outbound lists with their filters in the address, keyset pages older
and newer, a CSV of exactly what the filters show, and a page per message with all it links to."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard.auth import current_user, require
from app.dashboard.exports import csv_stream, pages_of
from app.dashboard.i18n import N_
from app.db.models import INBOUND_STATUSES, OUTBOX_STATUSES
from app.flows.live import LiveFlows
from app.mobitex.mo_form import normalise_number
from app.reads.messages import inbound_detail, list_inbound, list_outbox, sent_message
from app.reads.overview import WARSAW

PAGE = 50

IN_COLUMNS = ("id", "received_at", "sms_id", "sender", "number", "text", "status", "flow_id", "error",
              "ext_id", "correlation", "reply_to_id", "deliveries", "charset", "client_ip")  # fmt: skip
OUT_COLUMNS = ("id", "created_at", "ext_id", "to_number", "from_number", "text", "status",
               "flow_id", "encoding", "parts", "attempts", "last_error", "mobitex_id", "sent_at",
               "inbound_id")  # fmt: skip


class Filters(msgspec.Struct, frozen=True):
    """What the list shows, as the address carries it (a Warsaw date range, days included)."""

    number: str = ""
    text: str = ""
    flow: str = ""
    status: str = ""
    since: str = ""
    until: str = ""

    def query(self, **extra: Any) -> str:
        fields = {k: v for k, v in msgspec.structs.asdict(self).items() if v} | extra
        return urlencode(fields)

    def read_args(self, direction: str) -> dict[str, Any]:
        """The read query's arguments; a date that does not parse is left out (and shown as is)."""
        args: dict[str, Any] = {
            "flow": self.flow or None,
            "text": self.text or None,
            "since": _day_start(self.since),
            "until": _day_start(self.until, 1),
        }
        number = normalise_number(self.number) if self.number.strip() else None
        statuses = INBOUND_STATUSES if direction == "in" else OUTBOX_STATUSES
        args["status"] = self.status if self.status in statuses else None
        args["sender" if direction == "in" else "to"] = number
        return args


def _day_start(value: str, days: int = 0) -> datetime | None:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None
    return datetime.combine(day + timedelta(days=days), time(0), tzinfo=WARSAW)


def _filters(number: str, text: str, flow: str, status: str, since: str, until: str) -> Filters:
    return Filters(number.strip(), text, flow.strip(), status.strip(), since.strip(), until.strip())


class MessagesController(Controller):
    path = "/messages"
    guards = (require("viewer"),)

    @get("/", name="messages")
    async def index(self) -> Redirect:
        return Redirect("/messages/in", status_code=HTTP_303_SEE_OTHER)

    # Each address spelled out: a path parameter beside /in/{sms_id} would never be matched.
    @get(["/in", "/out", "/in.csv", "/out.csv"], name="messages-list")
    async def page(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        number: FromQuery[str] = "",
        text: FromQuery[str] = "",
        flow: FromQuery[str] = "",
        status: FromQuery[str] = "",
        since: FromQuery[str] = "",
        until: FromQuery[str] = "",
        before: FromQuery[int | None] = None,
        after: FromQuery[int | None] = None,
    ) -> Template | Stream:
        direction = request.url.path.rsplit("/", 1)[-1]
        f = _filters(number, text, flow, status, since, until)
        if direction.endswith(".csv"):
            return self._export(request, db_engine, direction.removesuffix(".csv"), f)
        args = f.read_args(direction)
        reader = list_inbound if direction == "in" else list_outbox
        async with db_engine.connect() as conn:
            shown = await conn.run_sync(lambda c: reader(c, limit=PAGE, before=before, after=after, **args))
        live: LiveFlows = request.app.state.flows
        return Template(
            template_name="messages.html",
            context={
                "direction": direction,
                "page": shown,
                "f": f,
                "statuses": INBOUND_STATUSES if direction == "in" else OUTBOX_STATUSES,
                "flows": sorted(live.current.flows),
            },
        )

    def _export(
        self, request: Request[Any, Any, Any], engine: AsyncEngine, direction: str, f: Filters
    ) -> Stream:
        args = f.read_args(direction)
        reader = list_inbound if direction == "in" else list_outbox
        columns = IN_COLUMNS if direction == "in" else OUT_COLUMNS
        rows = pages_of(engine, lambda c, cursor: reader(c, limit=1000, before=cursor, **args), columns)
        phones = ("sender",) if direction == "in" else ("to_number",)
        texts = ("error",) if direction == "in" else ("last_error",)  # a send error names the number
        user = current_user(request)
        name = f"messages-{direction}.csv"
        return csv_stream(name, columns, rows, reader=user, phones=phones, texts=texts)

    @get("/in/{sms_id:str}", name="message-in")
    async def inbound(self, db_engine: NamedDependency[AsyncEngine], sms_id: FromPath[str]) -> Template:
        async with db_engine.connect() as conn:
            found = await conn.run_sync(lambda c: inbound_detail(c, sms_id))
        if found is None:
            raise NotFoundException(f"There is no inbound message {sms_id}.")
        return Template(template_name="message_in.html", context={"d": found})

    @get("/out/{message_id:int}", name="message-out")
    async def outbound(self, db_engine: NamedDependency[AsyncEngine], message_id: FromPath[int]) -> Template:
        async with db_engine.connect() as conn:
            found = await conn.run_sync(lambda c: sent_message(c, message_id))
        if found is None:
            raise NotFoundException(f"There is no sent message {message_id}.")
        return Template(template_name="message_out.html", context={"m": found})


# Statuses that reach these pages as data; listed so that extraction puts them in the catalogs.
WORDS = (
    N_("received"), N_("processed"), N_("ignored"), N_("matched"), N_("unmatched"),
    N_("held"), N_("reingested"), N_("discarded"), N_("pending"), N_("active"), N_("left"),
)  # fmt: skip
