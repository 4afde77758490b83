"""Public results boards: links made and revoked with the API token, figures read with the link.

``/api/board/{token}`` needs no API token and no login: the link is the permission, and it
shows aggregated figures only. An unknown and a revoked link get the same 404.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api.auth import require_token
from app.boards import (
    Board,
    BoardLinkOut,
    LinkError,
    NewLink,
    board_figures,
    create_link,
    flow_of,
    list_links,
    revoke_link,
)
from app.dashboard import i18n
from app.dashboard.headers import SecurityHeaders
from app.flows.live import LiveFlows
from app.flows.loader import LoadedFlow

ACTOR = "api"
REFRESH = 5  # seconds between reloads of the board page
GONE = "no such board: the link is wrong or was revoked; ask whoever gave it to you for a new one"


class NewBoardLink(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    """What the link is for, e.g. ``studio screen``."""


def _running(state: State, flow_id: str) -> LoadedFlow | None:
    live: LiveFlows = state.flows
    return live.current.flows.get(flow_id)


class BoardLinksController(Controller):
    path = "/api/flows/{flow_id:str}/boards"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["boards"]  # noqa: RUF012

    @get("/", summary="The flow's board links, live and revoked")
    async def list_links(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str]
    ) -> list[BoardLinkOut]:
        async with db_engine.connect() as conn:
            return await conn.run_sync(list_links, flow_id)

    @post("/", status_code=201, summary="Make a link to the flow's public board; its token is shown once")
    async def create(
        self,
        state: State,
        db_engine: NamedDependency[AsyncEngine],
        flow_id: FromPath[str],
        data: JSONBody[NewBoardLink],
    ) -> NewLink:
        if _running(state, flow_id) is None:
            raise NotFoundException(f"no flow {flow_id!r} is running; GET /api/flows lists them")
        async with db_engine.begin() as conn:
            return await conn.run_sync(create_link, flow_id, data.label, ACTOR)

    @post("/{link_id:int}/revoke", status_code=200, summary="Revoke a board link: it stops working at once")
    async def revoke(
        self, db_engine: NamedDependency[AsyncEngine], flow_id: FromPath[str], link_id: FromPath[int]
    ) -> BoardLinkOut:
        async with db_engine.connect() as conn:
            mine = any(link.id == link_id for link in await conn.run_sync(list_links, flow_id))
        if not mine:
            raise NotFoundException(
                f"flow {flow_id!r} has no board link {link_id}; GET this flow's boards lists them"
            )
        try:
            async with db_engine.begin() as conn:
                return await conn.run_sync(revoke_link, link_id, ACTOR)
        except LinkError as exc:
            raise ClientException(str(exc), status_code=409) from None


async def read_board(state: State, engine: AsyncEngine, token: str) -> Board:
    """The board a link shows, or 404; shared by the JSON endpoint and the page."""
    async with engine.connect() as conn:
        flow_id = await conn.run_sync(flow_of, token)
        flow = _running(state, flow_id) if flow_id is not None else None
        if flow is None:
            raise NotFoundException(GONE)
        return await conn.run_sync(board_figures, flow)


@get(
    "/board/{token:str}",
    middleware=[SecurityHeaders()],
    include_in_schema=False,
    summary="A public board's page: large figures, reloading itself",
)
async def board_page(
    request: Request[object, object, State], db_engine: NamedDependency[AsyncEngine], token: FromPath[str]
) -> Template:
    board = await read_board(request.app.state, db_engine, token)
    context = {"board": board, "refresh": REFRESH, "locale": i18n.locale_of(request), "request": request}
    return Template(template_name="board.html", context=context)


class PublicBoardController(Controller):
    path = "/api/board"
    tags = ["boards"]  # noqa: RUF012

    @get("/{token:str}", summary="A public board's figures (no token, no login: the link is the key)")
    async def figures(
        self, state: State, db_engine: NamedDependency[AsyncEngine], token: FromPath[str]
    ) -> Board:
        return await read_board(state, db_engine, token)
