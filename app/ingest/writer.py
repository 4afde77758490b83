"""The group-commit writer: the one task that writes MO messages (and runs flows on them).

Webhook requests hand their row to the writer and wait. While one transaction commits, the
requests that arrive meanwhile queue up; the next transaction takes all of them at once. Each
request's future resolves only after the transaction holding its row has committed, so a 200
to Mobitex always means "on disk". One fsync serves a whole group, which is what makes
``synchronous=FULL`` affordable under load.

On PostgreSQL the writer runs several such loops, its *lanes*, each with a queue and a
connection of its own: one lane waits for its commit while another runs its batch. A message
goes to the lane of its phone, so one phone's messages are still handled one after another, in
the order they came, and two lanes never write one contact at once. SQLite has one write lock
per database and keeps one lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.dialect import as_arrays, execute_rows, insert_for, unnested
from app.db.models import InboundMessage, QuarantinedRequest, utcnow
from app.db.outage import DEADLOCK_TRIES, is_retryable
from app.errors import Conflict, DatabaseBusy, DatabaseUnavailable
from app.flows.decisions import CONTACTS_NOW, touch_contacts_of
from app.flows.engine import PENDING_COLUMNS, FlowRaised, Guard, process_new
from app.flows.loader import FlowSet
from app.metrics import observe_batch
from app.mobitex.mo_form import MoMessage

log = logging.getLogger("smsflows.ingest")

INBOUND: Table = InboundMessage.__table__  # type: ignore[assignment]
QUARANTINE: Table = QuarantinedRequest.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class _Job:
    kind: Literal["message", "quarantine"]
    row: dict[str, Any]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    resolves: int | None = None  # the quarantined request this message was repaired from


@dataclass(slots=True, eq=False)
class _Lane:
    """One queue and the loop that writes it in batches; on PostgreSQL, with its own connection."""

    number: int
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    pg_conn: AsyncConnection | None = None  # kept across batches


def lane_of(phone: str, lanes: int) -> int:
    """The lane a phone's messages go to: the same one for as long as the process runs."""
    return zlib.crc32(phone.encode()) % lanes


class GroupWriter:
    """Owns all MO writes; start() it in the app's lifespan and stop() it on shutdown."""

    def __init__(
        self,
        engine: AsyncEngine,
        batch_max: int = 512,
        flows: Callable[[], FlowSet] | None = None,
        sync_engine: Engine | None = None,
        on_commit: Callable[[], None] | None = None,
        lanes: int = 1,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"a writer needs at least one lane, not {lanes}")
        self._engine = engine
        self._flows = flows
        self._on_commit = on_commit  # the outbox dispatcher's wake-up: flows may have queued replies
        # With a synchronous engine (SQLite) each batch runs whole in the writer's own thread.
        self._sync_engine = sync_engine
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="smsflows-writer") if sync_engine else None
        self._batch_max = batch_max
        # SQLite: one write lock per database, so a second lane would only wait for the first.
        self._lanes = [_Lane(n) for n in range(1 if sync_engine is not None else lanes)]
        self._turns = itertools.count()  # quarantined requests take the lanes in turn
        self._closing = False
        self.batches = 0
        self.rows = 0

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    async def start(self) -> None:
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"smsflows-group-writer-{lane.number}")

    async def stop(self) -> None:
        """Commit what is queued in every lane, then end their tasks."""
        self._closing = True
        running = [lane for lane in self._lanes if lane.task is not None]
        if not running:
            return
        await asyncio.gather(*(lane.queue.join() for lane in running))
        for lane in running:
            assert lane.task is not None
            lane.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lane.task
            lane.task = None
            await self._drop_pg_connection(lane)
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def store_message(
        self,
        msg: MoMessage,
        *,
        raw_body: bytes,
        charset: str,
        client_ip: str,
        received_at: datetime,
        resolves: int | None = None,
    ) -> None:
        """Return once the message (or one more delivery of it) is committed.

        ``resolves`` is the quarantined request the message was repaired from: it is marked
        ``reingested`` in the same transaction, or :class:`~app.errors.Conflict` is raised and
        nothing is stored if it is no longer held.
        """
        row = message_row(
            msg, raw_body=raw_body, charset=charset, client_ip=client_ip, received_at=received_at
        )
        lanes = self._lanes
        lane = lanes[0] if len(lanes) == 1 else lanes[lane_of(msg.sender, len(lanes))]
        await self._submit(lane, _Job("message", row, resolves=resolves))

    async def quarantine(
        self, *, raw_body: bytes, content_type: str | None, client_ip: str, reason: str, received_at: datetime
    ) -> None:
        """Return once the raw request is committed to the quarantine table."""
        row = {
            "raw_body": raw_body,
            "content_type": (content_type or "")[:200] or None,
            "client_ip": client_ip,
            "reason": reason,
            "received_at": received_at,
            "status": "held",
        }
        lane = self._lanes[next(self._turns) % len(self._lanes)]  # no phone: any lane will do
        await self._submit(lane, _Job("quarantine", row))

    async def _submit(self, lane: _Lane, job: _Job) -> None:
        if lane.task is None or lane.task.done() or self._closing:
            raise DatabaseUnavailable("the writer is not running (service starting or stopping); retry later")
        lane.queue.put_nowait(job)
        # No shield: a waiter cancelled meanwhile cancels only its future; the job stays queued and
        # is written with its batch, which answers only the futures not done yet.
        await job.done

    async def _run(self, lane: _Lane) -> None:
        queue = lane.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < self._batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._commit_batch(lane, batch)
            except BaseException as exc:  # keep the loop alive; every waiter gets an answer
                _fail(batch, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                for _ in batch:
                    queue.task_done()

    async def _commit_batch(self, lane: _Lane, batch: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            acted = await self._write(lane, batch)
        except (IntegrityError, DataError, Conflict):
            # One bad row must not fail its neighbours: retry them one by one.
            if len(batch) == 1:
                raise
            acted = False
            for job in batch:
                try:
                    acted = await self._write(lane, [job]) or acted
                except Conflict as exc:
                    _fail([job], exc)
                except (IntegrityError, DataError) as exc:
                    log.error("request refused by the database: %s", exc)
                    _fail([job], exc)
                except (DBAPIError, OSError) as exc:
                    _fail([job], _unavailable(exc))
                else:
                    if not job.done.done():
                        job.done.set_result(None)
            if self._on_commit is not None and acted:
                self._on_commit()
            return
        except (DBAPIError, OSError) as exc:
            log.error("database write failed for %d request(s): %s", len(batch), exc)
            _fail(batch, _unavailable(exc))
            return
        self.batches += 1
        self.rows += len(batch)
        observe_batch(len(batch), time.perf_counter() - started)
        if self._on_commit is not None and acted:
            self._on_commit()
        for job in batch:
            if not job.done.done():
                job.done.set_result(None)

    async def _write(self, lane: _Lane, batch: Sequence[_Job]) -> bool:
        """Write the batch; whether a flow acted on it (it may have queued replies)."""
        messages = _merge_duplicates([j.row for j in batch if j.kind == "message"])
        quarantined = [j.row for j in batch if j.kind == "quarantine"]
        resolved = [(j.resolves, j.row["sms_id"]) for j in batch if j.resolves is not None]
        if self._sync_engine is not None:
            return await self._write_sqlite(messages, quarantined, resolved)
        return await self._write_postgres(lane, messages, quarantined, resolved)

    async def _write_postgres(
        self,
        lane: _Lane,
        messages: list[dict[str, Any]],
        quarantined: list[dict[str, Any]],
        resolved: Sequence[tuple[int, str]],
    ) -> bool:
        """Run the batch on the lane's own connection, kept from one batch to the next.

        A connection from the pool would be pinged on every checkout, which on asyncpg costs
        three round trips (BEGIN, a query, ROLLBACK) per batch. A connection that died meanwhile
        (a database restart) is found by the batch itself instead, which then runs once more on
        a new one: an uncommitted transaction died with its connection, and if it was the
        commit's answer that got lost the messages are stored already, so the batch adds one
        delivery to each, as a redelivery from Mobitex would, and flows skip them. A batch that
        re-ingests quarantined requests is not run again (it would find them resolved by itself).

        The transaction itself guards the flows (no batch SAVEPOINT, a round trip less): if a
        flow raises, it is rolled back whole and run once more with a SAVEPOINT per message, so
        the failing message is kept as ``failed`` and its neighbours go on.

        Another lane or process may hold rows this batch needs (one ``sms_id`` delivered to both,
        a code two phones redeem): the batch waits for them, and if both wait for each other the
        database ends one of them with a deadlock. That one was rolled back whole, so it runs
        again (``DEADLOCK_TRIES`` in all) rather than failing its requests; after that they are
        answered 503 as :class:`~app.errors.DatabaseBusy`, which Mobitex retries, and the webhook
        goes on taking other messages (the database is not down).
        """
        guard: Guard = "transaction"
        lost = False
        tries = 1
        while True:
            conn = lane.pg_conn
            if conn is None or conn.closed or conn.invalidated:
                conn = lane.pg_conn = await self._engine.connect()
            try:
                async with conn.begin():
                    return await conn.run_sync(self._transaction, messages, quarantined, resolved, guard)
            except FlowRaised:  # raised only by the "transaction" guard: once at most
                guard = "per_message"
            except DBAPIError as exc:
                if is_retryable(exc) and tries < DEADLOCK_TRIES:
                    log.warning("batch rolled back by the database (%s); running it again", exc.orig)
                    tries += 1
                    continue
                if not exc.connection_invalidated or lost or resolved:
                    raise
                log.warning("the writer's database connection was lost; running the batch on a new one")
                await self._drop_pg_connection(lane)
                lost = True
            except BaseException:
                if conn.invalidated:
                    await self._drop_pg_connection(lane)
                raise

    async def _drop_pg_connection(self, lane: _Lane) -> None:
        conn, lane.pg_conn = lane.pg_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _write_sqlite(
        self,
        messages: list[dict[str, Any]],
        quarantined: list[dict[str, Any]],
        resolved: Sequence[tuple[int, str]],
    ) -> bool:
        """Run the whole transaction in the writer thread: one hand-off per batch.

        Taking the write lock (BEGIN IMMEDIATE) may wait for another process and the commit
        waits for fsync: both block, so they cannot run on the event loop. The statements in
        between go with them: a hand-off costs more than the GIL the thread shares with the loop
        while it runs them (SQLite itself lets go of the GIL while it steps and syncs).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._sqlite_batch, messages, quarantined, resolved)

    def _sqlite_batch(
        self,
        messages: list[dict[str, Any]],
        quarantined: list[dict[str, Any]],
        resolved: Sequence[tuple[int, str]],
    ) -> bool:
        """The transaction itself guards the flows, as on PostgreSQL: no batch SAVEPOINT and its
        RELEASE (two statements a batch); if a flow raises, it is rolled back whole and run once
        more with a SAVEPOINT per message."""
        assert self._sync_engine is not None
        guard: Guard = "transaction"
        while True:
            conn = self._sync_engine.connect()
            try:
                conn.begin()
                acted = self._transaction(conn, messages, quarantined, resolved, guard)
                conn.commit()
            except FlowRaised:  # raised only by the "transaction" guard: once at most
                _close(conn)
                guard = "per_message"
                continue
            except BaseException:
                _close(conn)
                raise
            conn.close()
            return acted

    def _transaction(
        self,
        conn: Connection,
        messages: list[dict[str, Any]],
        quarantined: list[dict[str, Any]],
        resolved: Sequence[tuple[int, str]] = (),
        guard: Guard = "savepoint",
    ) -> bool:
        """Store the batch and run the flows on it; whether a flow acted (replies may be queued)."""
        for qid, sms_id in resolved:
            _resolve(conn, qid, sms_id)
        flows = self._flows is not None
        stored = _upsert_messages(conn, messages, touch_contacts=flows) if messages else None
        if quarantined:
            conn.execute(insert(QUARANTINE), quarantined)
        if messages and self._flows is not None:
            # Flows act in this same transaction: a vote and its reply exist exactly when the
            # message does, and a redelivered message (no longer "received") is skipped.
            outcomes = process_new(
                conn,
                self._flows(),
                [m["sms_id"] for m in messages],
                stored=stored,
                guard=guard,
                contacts_touched=stored is not None,
            )
            # Only a batch where a flow acted can have queued replies worth waking the dispatcher for.
            return "processed" in outcomes.values()
        return False


def _resolve(conn: Connection, qid: int, sms_id: str) -> None:
    """Mark a quarantined request as re-ingested, unless someone resolved it meanwhile (SQLite
    has no row locks: the condition on ``status`` is what makes it safe)."""
    done = conn.execute(
        update(QUARANTINE)
        .where(QUARANTINE.c.id == qid, QUARANTINE.c.status == "held")
        .values(status="reingested", sms_id=sms_id, resolved_at=utcnow())
    )
    if done.rowcount != 1:
        raise Conflict(f"quarantined request {qid} was resolved meanwhile")


def message_row(
    msg: MoMessage, *, raw_body: bytes, charset: str, client_ip: str, received_at: datetime
) -> dict[str, Any]:
    return {
        "sms_id": msg.sms_id,
        "number": msg.number,
        "sender": msg.sender,
        "text": msg.text,
        "smcsc": msg.smcsc,
        "time": msg.time,
        "ext_id": msg.ext_id,
        "charset": charset,
        "raw_body": raw_body,
        "client_ip": client_ip,
        "received_at": received_at,
        "last_received_at": received_at,
        "deliveries": 1,
        "status": "received",
    }


def _merge_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold repeated sms_ids of one batch into one row; PostgreSQL refuses to upsert a key twice."""
    merged: dict[str, dict[str, Any]] = {}
    copied: set[str] = set()  # a job's own row stays as it came: a retry one by one rebuilds from it
    for row in rows:
        sms_id = row["sms_id"]
        seen = merged.get(sms_id)
        if seen is None:
            merged[sms_id] = row
            continue
        if sms_id not in copied:
            copied.add(sms_id)
            seen = merged[sms_id] = dict(seen)
        seen["deliveries"] += 1
        seen["last_received_at"] = max(seen["last_received_at"], row["last_received_at"])
    return list(merged.values())


def _upsert_messages(
    conn: Connection, rows: list[dict[str, Any]], *, touch_contacts: bool = False
) -> Sequence[Sequence[Any]] | None:
    """Store the rows; on PostgreSQL, return them as they now are (flows' ``PENDING_COLUMNS``),
    and with ``touch_contacts`` count the ones still ``received`` on their contacts, as the flow
    engine would (:func:`~app.flows.decisions.touch_contacts`), in the same statement."""
    if conn.dialect.name == "postgresql":  # the batch as one array per column: one execution
        keys = tuple(rows[0])
        # RETURNING hands back each row after its insert or update: flows need not read them again.
        if not touch_contacts:
            return conn.execute(upsert_statement("postgresql", keys), as_arrays(rows, keys)).all()
        params: dict[str, Any] = as_arrays(rows, keys)
        params[CONTACTS_NOW] = utcnow()
        return conn.execute(_upsert_touching_contacts(keys), params).all()
    execute_rows(conn, upsert_statement(conn.dialect.name), rows)
    return None


@functools.lru_cache(maxsize=8)
def _upsert_touching_contacts(keys: tuple[str, ...]) -> Any:
    stored = upsert_statement("postgresql", keys).cte("stored_messages")
    return select(*[stored.c[c.key] for c in PENDING_COLUMNS]).add_cte(touch_contacts_of(stored))


@functools.cache  # built once per dialect: ``excluded`` costs a proxy per column each time
def upsert_statement(dialect: str, unnest: tuple[str, ...] = ()) -> Any:
    """INSERT of inbound rows where a known sms_id only adds to its delivery count; with
    ``unnest`` (PostgreSQL), of rows with those keys sent as arrays (:func:`as_arrays`), returning
    each row as it is after the statement (``PENDING_COLUMNS``)."""
    stmt = insert_for(dialect, INBOUND)
    if unnest:
        stmt = stmt.from_select(list(unnest), unnested(INBOUND, unnest))
    upsert = stmt.on_conflict_do_update(
        index_elements=["sms_id"],
        set_={
            "deliveries": INBOUND.c.deliveries + stmt.excluded.deliveries,
            "last_received_at": stmt.excluded.last_received_at,
        },
    )
    return upsert.returning(*PENDING_COLUMNS) if unnest else upsert


def _close(conn: Connection) -> None:
    """Roll back and hand the connection back, whatever state a failed batch left it in."""
    try:
        conn.rollback()
    finally:
        conn.close()


def _unavailable(exc: DBAPIError | OSError) -> DatabaseUnavailable:
    if is_retryable(exc):
        return DatabaseBusy(
            f"the database rolled the write back {DEADLOCK_TRIES} times for concurrent writes"
        )
    return DatabaseUnavailable(f"database unavailable: {exc.__class__.__name__}")


def _fail(batch: Sequence[_Job], exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):
        exc = DatabaseUnavailable("the writer stopped before this request was committed; retry later")
    for job in batch:
        if not job.done.done():
            job.done.set_exception(exc)
