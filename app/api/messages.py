"""``/api/messages``: applications send a message (S1) and read what became of it and its answers."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.auth import require_token
from app.api.deps import read
from app.api.params import RowId
from app.api.schema import BEARER
from app.api.schemas import MessageOut
from app.db.models import utcnow
from app.flows.live import LiveFlows
from app.mobitex.encoding import MessageTooLong
from app.outbox.sending import IdempotencyConflict, InvalidSend, NewMessage, Queued, queue
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
        request: Request[object, object, State],
        data: JSONBody[NewMessage],
    ) -> Response[MessageOut]:
        """``201`` with the new message; ``200`` with the same message when its ``idempotency_key``
        was used before for the same message; ``409`` when it was used for another one; ``422``
        when the number, the text (too long: it says by how much) or another field cannot be sent."""
        live: LiveFlows = request.app.state.flows
        now = utcnow()
        try:
            queued: Queued = await db_session.run_sync(
                lambda sync: queue(sync.connection(), data, now, live.current)
            )
        except (InvalidSend, MessageTooLong) as exc:
            await db_session.rollback()
            raise ClientException(str(exc), status_code=422) from None
        except IdempotencyConflict as exc:
            await db_session.rollback()
            raise ClientException(str(exc), status_code=409) from None
        await db_session.commit()
        dispatcher = getattr(request.app.state, "dispatcher", None)
        if dispatcher is not None:
            dispatcher.wake()
        return Response(await _message(db_session, queued.id), status_code=201 if queued.created else 200)

    @get("/{message_id:int}", summary="A sent message: its status, its answers and send-back actions")
    async def show(self, db_session: NamedDependency[AsyncSession], message_id: RowId) -> MessageOut:
        return await _message(db_session, message_id)


async def _message(session: AsyncSession, message_id: int) -> MessageOut:
    message = await read(session, sent_message, message_id)
    if message is None:
        raise NotFoundException(f"no message {message_id}; GET /api/outbox lists them")
    return message
