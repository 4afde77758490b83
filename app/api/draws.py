"""``/api/flows/{id}/draws``: draw a flow's winners, read its rounds and records, tell the winners."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException, ServiceUnavailableException
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.db.models import utcnow
from app.draws import (
    DrawAlreadyMade,
    DrawError,
    DrawNotFound,
    DrawRecord,
    DrawRequest,
    Notified,
    NotifyRequest,
    RoundSummary,
    StoredPick,
    list_rounds,
    notify,
    picks,
    run_draw,
    stored_record,
)
from app.draws.canonical import PseudonymKeyMissing
from app.errors import InvalidSend
from app.flows.live import LiveFlows
from app.flows.loader import LoadedFlow
from app.mobitex.encoding import MessageTooLong
from app.settings import Settings

ACTOR = "api"


def _flow(state: State, flow_id: str) -> LoadedFlow:
    live: LiveFlows = state.flows
    flow = live.current.flows.get(flow_id)
    if flow is None:
        raise NotFoundException(f"no flow {flow_id!r} is running; GET /api/flows lists them")
    return flow


def _client_error(exc: DrawError) -> ClientException:
    return ClientException(str(exc), status_code=404 if isinstance(exc, DrawNotFound) else 422)


class DrawsController(Controller):
    path = "/api/flows/{flow_id:str}/draws"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["draws"]  # noqa: RUF012

    @get("/", summary="Every round of the flow's draws")
    async def list_draws(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> list[RoundSummary]:
        async with db_engine.connect() as conn:
            return await conn.run_sync(list_rounds, flow_id)

    @post("/", status_code=201, summary="Draw the flow's winners; the record comes back")
    async def run(
        self,
        state: State,
        settings: NamedDependency[Settings],
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        data: JSONBody[DrawRequest],
    ) -> DrawRecord:
        """``409`` when the round is taken (a further one needs ``new_round`` and ``reason``);
        ``422`` when the rule cannot be drawn (no entries, a flow kind without entries, ...)."""
        flow = _flow(state, flow_id)
        try:
            return await run_draw(db_engine, flow, data, ACTOR, settings.pseudonym_key)
        except DrawAlreadyMade as exc:
            raise ClientException(str(exc), status_code=409) from None
        except PseudonymKeyMissing as exc:
            raise ServiceUnavailableException(str(exc)) from None
        except DrawError as exc:
            raise _client_error(exc) from None

    @get("/{round:int}", summary="The record of a round: entries (phones masked), seed, winners")
    async def record(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str], round: FromPath[int]
    ) -> DrawRecord:
        async with db_engine.connect() as conn:
            try:
                return await conn.run_sync(stored_record, flow_id, round)
            except DrawError as exc:
                raise _client_error(exc) from None

    @get("/{round:int}/picks", summary="A round's winners and reserves with their whole numbers")
    async def picks(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str], round: FromPath[int]
    ) -> list[StoredPick]:
        async with db_engine.connect() as conn:
            try:
                _, _, chosen = await conn.run_sync(picks, flow_id, round)
            except DrawError as exc:
                raise _client_error(exc) from None
        return chosen

    @post("/{round:int}/notify", status_code=200, summary="Tell a round's winners by SMS")
    async def notify(
        self,
        state: State,
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        round: FromPath[int],
        data: JSONBody[NotifyRequest],
    ) -> list[Notified]:
        """One message per winner (and reserve, with ``reserves``), tagged so that answers go to
        the ``reply`` flow; asking again queues nothing new."""
        live: LiveFlows = state.flows
        try:
            async with db_engine.begin() as conn:
                done = await conn.run_sync(
                    lambda c: notify(c, flow_id, round, data, live.current, utcnow(), ACTOR)
                )
        except DrawError as exc:
            raise _client_error(exc) from None
        except (InvalidSend, MessageTooLong) as exc:
            raise ClientException(str(exc), status_code=422) from None
        dispatcher = getattr(state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return done
