"""``/api/messages``: applications send a message (S1) and read what became of it and its answers."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.deps import read
from app.api.params import RowId
from app.api.schema import BEARER
from app.api.schemas import MessageOut
from app.db.models import utcnow
from app.errors import NotFound
from app.flows.live import LiveFlows
from app.outbox.dispatcher import Dispatcher
from app.outbox.sending import NewMessage, Queued, queue
from app.reads.messages import sent_message


class MessagesController(Controller):
    path = "/api/messages"
    guards = [require_token]  # noqa: RUF012 - Litestar reads this class attribute
    security = [{BEARER: []}]  # noqa: RUF012 - declared in the schema, so "try it" sends the token
    tags = ["messages"]  # noqa: RUF012

    @post("/", summary="Queue a message to send; answers to it are tied back to it")
    async def send(
        self,
        db_session: NamedDependency[AsyncSession],
        live_flows: NamedDependency[LiveFlows],
        dispatcher: NamedDependency[Dispatcher | None],
        data: JSONBody[NewMessage],
    ) -> Response[MessageOut]:
        """``201`` with the new message; ``200`` with the same message when its ``idempotency_key``
        was used before for the same message; ``409`` when it was used for another one; ``422``
        when the number, the text (too long: it says by how much) or another field cannot be sent."""
        flows, now = live_flows.current.flows, utcnow()
        queued: Queued = await db_session.run_sync(lambda sync: queue(sync.connection(), data, now, flows))
        await db_session.commit()
        if dispatcher is not None:
            dispatcher.wake()
        return Response(await _message(db_session, queued.id), status_code=201 if queued.created else 200)

    @get("/{message_id:int}", summary="A sent message: its status, its answers and send-back actions")
    async def show(self, db_session: NamedDependency[AsyncSession], message_id: RowId) -> MessageOut:
        return await _message(db_session, message_id)


async def _message(session: AsyncSession, message_id: int) -> MessageOut:
    message = await read(session, sent_message, message_id)
    if message is None:
        raise NotFound(f"no message {message_id}; GET /api/outbox lists them")
    return message
