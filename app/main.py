"""create_app(): the one place the service is assembled (routes, dependencies, lifespan)."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import HTTPScope, LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from app.api.boards import BoardLinksController, PublicBoardController, board_page
from app.api.contacts import ContactsController
from app.api.counters import CountersController
from app.api.deps import DEPENDENCIES
from app.api.draws import DrawsController
from app.api.errors import EXCEPTION_HANDLERS
from app.api.evidence import AuditController
from app.api.failures import unexpected_error
from app.api.flows import FlowsController
from app.api.health import health, ready
from app.api.inbound import InboundController
from app.api.messages import MessagesController
from app.api.metrics import metrics_routes
from app.api.outbox import OutboxController
from app.api.schema import openapi_config
from app.dashboard import dashboard, not_found
from app.dashboard.live import TallyHub
from app.db.engine import create_checkpointer, create_engine, create_sqlite_writer_engine, session_factory
from app.db.migrate import prepare_schema
from app.flows.live import LiveFlows
from app.ingest.gate import DatabaseGate
from app.ingest.webhook import MoWebhook, mo_route
from app.ingest.writer import GroupWriter
from app.logs import configure_logging
from app.outbox.actions import ActionDeliverer
from app.outbox.dispatcher import Dispatcher
from app.privacy.retention import ScheduledPurge
from app.settings import Settings, load_settings

log = logging.getLogger("smsflows")


def _reload_on_sighup(flows: LiveFlows) -> None:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, flows.reload)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
        log.debug("SIGHUP reload not available in this process; use POST /api/flows/reload")


class Service(Litestar):
    """The application, with the MO webhook answered ahead of Litestar's routing.

    A vote burst is thousands of webhook requests a second, and the webhook needs none of what
    routing, middleware and the request and response objects do per request (measured, they cost
    several times the webhook's own reading of a request): a POST to its path goes straight to it.
    Every other request, and any other method on that path, takes the ordinary way.
    """

    def __init__(self, webhook: MoWebhook, **config: Any) -> None:
        super().__init__(**config)
        self.webhook = webhook

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        webhook = self.webhook
        if scope["type"] == ScopeType.HTTP:
            http = cast("HTTPScope", scope)
            if http["path"] == webhook.path and http["method"] == "POST":
                await webhook(http, cast("Receive", receive), cast("Send", send))
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings)
        try:
            await prepare_schema(engine, settings)
            flows = LiveFlows(Path(settings.flows_dir), replies_per_day=settings.replies_per_day)
            log.info("%d flow(s) loaded from %s", len(flows.current.flows), settings.flows_dir)
            writer_engine = create_sqlite_writer_engine(settings) if settings.is_sqlite else None
            checkpointer = create_checkpointer(settings, writer_engine) if writer_engine else None
            if checkpointer is not None:
                checkpointer.start()
            # Sends the outbox from this process; `smsflows worker` runs more, or alone (dispatcher off).
            dispatcher = Dispatcher(engine, settings) if settings.dispatcher else None
            writer = GroupWriter(
                engine,
                settings.writer_batch_max,
                flows=lambda: flows.current,
                sync_engine=writer_engine,
                on_commit=dispatcher.wake if dispatcher else None,
                lanes=settings.writer_lanes,
            )
            await writer.start()
            if dispatcher is not None:
                await dispatcher.start()
            actions = ActionDeliverer(engine, settings) if settings.dispatcher else None
            if actions is not None:
                await actions.start()
            purger = ScheduledPurge(engine, settings)
            await purger.start()
            app.state.dispatcher = dispatcher
            app.state.db_gate = gate = DatabaseGate(engine)
            webhook.writer, webhook.gate = writer, gate
            app.state.engine, app.state.writer, app.state.flows = engine, writer, flows
            _reload_on_sighup(flows)
            app.state.sessions = session_factory(engine)
            app.state.tally_hub = hub = TallyHub(engine)
            if settings.session_secret:  # the dashboard is on: count what its first page shows
                hub.warm_up(flows.current.flows.values())
            # What start-up loaded lives as long as the process: keep it out of the collector's
            # full passes, which would otherwise walk all of it again and again under load.
            gc.freeze()
            log.info("MO webhook listening on %s", settings.mo_path)
            try:
                yield
            finally:
                await hub.stop()
                await gate.stop()
                await purger.stop()
                if actions is not None:
                    await actions.stop()
                if dispatcher is not None:
                    await dispatcher.stop()
                await writer.stop()
                if checkpointer is not None:
                    checkpointer.stop()
                if writer_engine is not None:
                    writer_engine.dispose()
        finally:
            await engine.dispose()

    pages = dashboard(settings)
    webhook = MoWebhook(settings)
    return Service(
        webhook,
        route_handlers=[
            *pages.route_handlers,
            mo_route(webhook),
            health,
            ready,
            InboundController,
            FlowsController,
            OutboxController,
            MessagesController,
            *metrics_routes(settings),
            DrawsController,
            ContactsController,
            CountersController,
            AuditController,
            BoardLinksController,
            PublicBoardController,
            board_page,
        ],
        dependencies=DEPENDENCIES,
        template_config=pages.template_config,
        # Domain errors: JSON with the status their class names. An unknown address: JSON under
        # /api, the error page for people. Errors nothing else handled: logged with their
        # traceback, answered with a clean 500.
        exception_handlers={**EXCEPTION_HANDLERS, 404: not_found, 500: unexpected_error},
        lifespan=[lifespan],
        logging_config=None,  # app.logs configures logging once; Litestar's would reset the root level
        state=State({"settings": settings}),
        openapi_config=openapi_config(settings),
    )


def app_from_env() -> Litestar:
    """Factory for uvicorn (``--workers``): each worker process reads the same settings."""
    settings = load_settings()
    configure_logging(settings)  # a worker process is a fresh interpreter
    return create_app(settings)
