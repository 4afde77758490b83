"""``/draws`` and ``/flows/{id}/draws``: every round, a draw run from a form after a confirmation
step, and a round's protocol to print and sign, with its record to download.

The pages call the draws domain (``app.draws``) as the CLI and the API do: the rule, the
entries, the round's uniqueness and the audit entry are its business, not the page's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.dashboard import i18n
from app.dashboard.auth import client_of, current_user, require
from app.dashboard.i18n import N_
from app.db.draw_models import Draw
from app.db.models import WARSAW
from app.draws import (
    DrawAlreadyMade,
    DrawError,
    DrawRequest,
    RoundSummary,
    encode,
    list_rounds,
    picks,
    read_exclude_file,
    run_draw,
    stored_record,
)
from app.draws.canonical import PseudonymKeyMissing
from app.draws.entries import eligible, make_rule
from app.flows.live import LiveFlows
from app.flows.loader import LoadedFlow
from app.settings import Settings

Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class DrawForm(msgspec.Struct):
    """The form as typed: strings, checked by turning them into a :class:`DrawRequest`."""

    winners: str = "1"
    reserves: str = "0"
    per: str = "phone"
    since: str = ""
    until: str = ""
    seed: str = ""
    exclude: str = ""
    reason: str = ""
    round: str = ""
    """The round the confirmation showed; a second submit of the same page finds it taken."""


class Invalid(Exception):
    """A field of the form is wrong; the message (one of ours) says which and how to fix it."""

    def __init__(self, message: str, **values: Any) -> None:
        super().__init__(message)
        self.values = values


def _flow(request: Request[Any, Any, Any], flow_id: str) -> LoadedFlow:
    live: LiveFlows = request.app.state.flows
    flow = live.current.flows.get(flow_id)
    if flow is None:
        raise NotFoundException(f"No flow {flow_id!r} is loaded; the list of flows shows those that are.")
    return flow


def _actor(request: Request[Any, Any, Any]) -> str:
    user = current_user(request)
    assert user is not None  # the guard let only signed-in users in
    return user.name


def _time(name: str, value: str) -> datetime | None:
    """A time from the form; without an offset it is Warsaw time, as on the command line."""
    if not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(
            N_("%(field)s: %(value)s is not a time; e.g. 2026-12-01T20:00"), field=name, value=value
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=WARSAW)


def _request(form: DrawForm, new_round: bool) -> DrawRequest:
    """The form as the request the domain takes; a wrong field raises :class:`Invalid`."""
    numbers = {}
    for name in ("winners", "reserves"):
        try:
            numbers[name] = int(getattr(form, name).strip() or "0")
        except ValueError:
            raise Invalid(N_("%(field)s: give a whole number."), field=name) from None
    if new_round and not form.reason.strip():
        raise Invalid(N_("This flow has been drawn already: say why a further round is drawn."))
    values = {
        **numbers,
        "per": form.per,
        "seed": form.seed.strip() or None,
        "since": _time("since", form.since),
        "until": _time("until", form.until),
        "exclude": read_exclude_file(form.exclude.splitlines()),
        "new_round": new_round,
        "reason": form.reason.strip() or None,
    }
    try:
        return msgspec.convert(values, DrawRequest)
    except msgspec.ValidationError as exc:
        raise Invalid(N_("The form is not right: %(problem)s"), problem=str(exc).replace("$.", "")) from None


def _translate(request: Request[Any, Any, Any], message: str, values: dict[str, Any]) -> str:
    return i18n.translations(i18n.locale_of(request)).gettext(message) % values


async def _rounds(engine: AsyncEngine, flow_id: str) -> list[RoundSummary]:
    async with engine.connect() as conn:
        return await conn.run_sync(list_rounds, flow_id)


class DrawsController(Controller):
    path = "/draws"
    guards = (require("viewer"),)

    @get("/", name="draws")
    async def index(self, db_engine: NamedDependency[AsyncEngine]) -> Template:
        async with db_engine.connect() as conn:
            flow_ids = (await conn.scalars(select(Draw.flow_id).distinct().order_by(Draw.flow_id))).all()
            rounds = [r for f in flow_ids for r in await conn.run_sync(list_rounds, f)]
        rounds.sort(key=lambda r: r.committed_at, reverse=True)
        return Template(template_name="draws.html", context={"rounds": rounds})


class FlowDrawsController(Controller):
    path = "/flows/{flow_id:str}/draws"

    @get("/new", name="draw-new", guards=[require("operator")])
    async def form(
        self, request: Request[Any, Any, Any], db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> Template:
        flow = _flow(request, flow_id)
        return await _form_page(db_engine, flow, DrawForm())

    @post("/new", name="draw-check", guards=[require("operator")], status_code=200)
    async def check(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        data: Annotated[DrawForm, Form],
    ) -> Template:
        """The confirmation step: what the draw will do, from how many entries, under which rule."""
        flow = _flow(request, flow_id)
        rounds = await _rounds(db_engine, flow.id)
        try:
            req = _request(data, new_round=bool(rounds))
            rule = make_rule(flow, req.per, req.since, req.until, req.exclude, settings.pseudonym_key)
            async with db_engine.connect() as conn:
                found = await conn.run_sync(
                    lambda c: eligible(c, flow, rule, req.exclude, settings.pseudonym_key)
                )
        except Invalid as exc:
            return await _form_page(db_engine, flow, data, _translate(request, str(exc), exc.values))
        except (DrawError, PseudonymKeyMissing) as exc:
            return await _form_page(db_engine, flow, data, str(exc))
        next_round = rounds[-1].round + 1 if rounds else 1
        return Template(
            template_name="draw_confirm.html",
            context={
                "flow": flow,
                "form": data,
                "req": req,
                "rule": rule,
                "eligible": len(found),
                "next_round": next_round,
            },
        )

    @post("/run", name="draw-run", guards=[require("operator")], status_code=200)
    async def run(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        data: Annotated[DrawForm, Form],
    ) -> Any:
        flow = _flow(request, flow_id)
        rounds = await _rounds(db_engine, flow.id)
        confirmed = int(data.round) if data.round.isdigit() else None
        if confirmed is not None and any(r.round >= confirmed for r in rounds):
            # The confirmed round exists: this is the same page sent again, not a further round.
            return _to_round(flow.id, confirmed, "already")
        try:
            req = _request(data, new_round=bool(rounds))
            record = await run_draw(
                db_engine, flow, req, _actor(request), settings.pseudonym_key, client=client_of(request)
            )
        except Invalid as exc:
            return await _form_page(db_engine, flow, data, _translate(request, str(exc), exc.values), 400)
        except DrawAlreadyMade:
            taken = await _rounds(db_engine, flow.id)
            return _to_round(flow.id, taken[-1].round, "already")
        except (DrawError, PseudonymKeyMissing) as exc:
            return await _form_page(db_engine, flow, data, str(exc), 400)
        return _to_round(flow.id, record.round, "drawn")

    @get("/{round:int}", name="draw-protocol", guards=[require("viewer")])
    async def protocol(
        self,
        request: Request[Any, Any, Any],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        round: FromPath[int],
        done: FromQuery[str | None] = None,
    ) -> Template:
        user = current_user(request)
        whole = user is not None and user.may("operator")
        async with db_engine.connect() as conn:
            record = await _read(conn.run_sync(stored_record, flow_id, round))
            rounds = await conn.run_sync(list_rounds, flow_id)
            # Whole numbers only for operators; a viewer's page never holds them.
            phones = (
                {p.entry_id: p.phone for p in (await conn.run_sync(picks, flow_id, round))[2]}
                if whole
                else {}
            )
        return Template(
            template_name="draw.html",
            context={
                "record": record,
                "rounds": rounds,
                "phones": phones,
                "done": done if done in ("drawn", "already") else None,
            },
        )

    @get("/{round:int}/record.json", name="draw-record", guards=[require("viewer")])
    async def download(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str], round: FromPath[int]
    ) -> Response[bytes]:
        """The record as ``smsflows draw run --output`` writes it (phones masked)."""
        async with db_engine.connect() as conn:
            record = await _read(conn.run_sync(stored_record, flow_id, round))
        name = f"{record.flow}-draw-{record.round}.json"
        return Response(
            encode(record),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )


async def _read(pending: Any) -> Any:
    """A stored round, or the page's 404 saying where the rounds are."""
    try:
        return await pending
    except DrawError as exc:
        raise NotFoundException(f"{exc}. The draws page lists every round.") from None


def _to_round(flow_id: str, round_: int, done: str) -> Redirect:
    query = urlencode({"done": done})
    return Redirect(f"/flows/{flow_id}/draws/{round_}?{query}", status_code=HTTP_303_SEE_OTHER)


async def _form_page(
    engine: AsyncEngine, flow: LoadedFlow, form: DrawForm, error: str | None = None, status: int = 200
) -> Template:
    return Template(
        template_name="draw_new.html",
        context={
            "flow": flow,
            "form": form,
            "rounds": await _rounds(engine, flow.id),
            "error": error,
        },
        status_code=400 if error and status == 200 else status,
    )
