"""The writer on PostgreSQL: what a batch of votes costs the database, and a lost connection.

Statement counts are not timings: a batch of votes runs the same statements every time, and
every statement is a round trip, so the count is what keeps the batch cheap on a remote server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.models import utcnow
from app.flows.loader import load_dir
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import parse_mo
from tests.conftest import Service, empty_database, make_settings, mo_form, write_flows
from tests.test_flow_batch import SURVEY
from tests.test_flow_vote import IN_WINDOW, vote_flow

pytestmark = pytest.mark.postgres

# Per batch of first votes: the messages' upsert (which returns the rows still to decide and
# counts them on their contacts), the vote insert, and one statement for the replies, events and
# statuses together (plus BEGIN and COMMIT, which are not statements). No SAVEPOINT: the
# transaction itself is run again if a flow raises.
STATEMENTS_PER_VOTE_BATCH = 3


class Counted:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.checkouts = 0


@pytest.fixture
async def votes(pg_database: str, tmp_path: Path) -> AsyncIterator[tuple[GroupWriter, Service, Counted]]:
    await empty_database(pg_database)
    flows_dir = write_flows(tmp_path / "flows", final=vote_flow())
    settings = make_settings(pg_database, flows_dir=str(flows_dir))
    engine = create_engine(settings)
    await upgrade(engine)
    flows = load_dir(flows_dir)
    counted = Counted()

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        counted.statements.append(sql)

    def checkout(*args: Any) -> None:
        counted.checkouts += 1

    w = GroupWriter(engine, flows=lambda: flows)
    await w.start()
    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    event.listen(engine.sync_engine.pool, "checkout", checkout)
    try:
        yield w, Service(settings, "", engine, None), counted  # type: ignore[arg-type]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", statement)
        event.remove(engine.sync_engine.pool, "checkout", checkout)
        await w.stop()
        await engine.dispose()


async def _batch(w: GroupWriter, senders: list[str]) -> None:
    stores = []
    for sender in senders:
        msg = parse_mo(mo_form(text="GLOS A", time=IN_WINDOW, sender=sender), max_text=4096)
        stores.append(
            w.store_message(
                msg, raw_body=b"raw", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow()
            )
        )
    await asyncio.gather(*stores)


@pytest.mark.parametrize("size", [1, 40])
async def test_a_batch_of_votes_costs_the_same_few_statements_whatever_its_size(
    votes: tuple[GroupWriter, Service, Counted], size: int
) -> None:
    w, db, counted = votes
    await _batch(w, [f"486000{n:05d}" for n in range(size)])
    counted.statements.clear()
    await _batch(w, [f"486100{n:05d}" for n in range(size)])
    assert w.batches == 2
    assert len(counted.statements) <= STATEMENTS_PER_VOTE_BATCH, counted.statements
    assert await db.scalar("SELECT count(*) FROM votes") == 2 * size
    # Each vote's reply is queued once, its event names it, and the message is decided.
    rows = await db.rows(
        "SELECT count(*), count(DISTINCT o.id), count(DISTINCT m.id) FROM flow_events e "
        "JOIN outbox o ON o.id = e.reply_id AND o.inbound_id = e.inbound_id "
        "JOIN inbound_messages m ON m.id = e.inbound_id AND m.status = 'processed' AND m.flow_id = 'final' "
        "WHERE e.outcome = 'accepted'"
    )
    assert tuple(rows[0]) == (2 * size, 2 * size, 2 * size)
    assert await db.scalar("SELECT count(*) FROM outbox") == 2 * size
    # Every phone is a contact, its one message counted once.
    assert tuple((await db.rows("SELECT count(*), sum(messages) FROM contacts"))[0]) == (2 * size, 2 * size)


async def test_the_writer_keeps_its_connection_from_batch_to_batch(
    votes: tuple[GroupWriter, Service, Counted],
) -> None:
    """A checkout would ping the connection first: three more round trips a batch."""
    w, _, counted = votes
    for n in range(3):
        await _batch(w, [f"48620000{n:03d}"])
    assert w.batches == 3
    assert counted.checkouts <= 1


async def test_a_connection_lost_between_batches_costs_no_message(
    votes: tuple[GroupWriter, Service, Counted],
) -> None:
    w, db, _ = votes
    await _batch(w, ["48630000001"])
    # The server ends the writer's connection, as a restart of the database would.
    lane = w._lanes[0]
    assert lane.pg_conn is not None
    raw = await lane.pg_conn.get_raw_connection()
    pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    assert await db.scalar("SELECT pg_terminate_backend(:pid)", pid=pid) is True
    await _batch(w, ["48630000002", "48630000003"])
    assert await db.scalar("SELECT count(*) FROM votes") == 3
    assert await db.scalar("SELECT count(*) FROM outbox") == 3
    assert await db.scalar("SELECT sum(deliveries) FROM inbound_messages") == 3


async def test_batches_of_any_size_run_the_same_statements(pg_database: str, tmp_path: Path) -> None:
    """A statement whose SQL changed with the batch's size (an IN list of N parameters) would be
    compiled and prepared anew for every size: with a survey loaded (the batch asks which phones
    are in a conversation) and answers to sent messages (their ext_id is looked up), a batch of
    two and one of five send the same SQL."""
    await empty_database(pg_database)
    flows_dir = write_flows(tmp_path / "flows", final=vote_flow(), opinia=SURVEY)
    settings = make_settings(pg_database, flows_dir=str(flows_dir))
    engine = create_engine(settings)
    await upgrade(engine)
    flows = load_dir(flows_dir)
    seen: list[set[str]] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen[-1].add(sql)

    w = GroupWriter(engine, flows=lambda: flows)
    await w.start()
    event.listen(engine.sync_engine, "before_cursor_execute", statement)
    try:
        for first, size in ((0, 2), (10, 5)):
            seen.append(set())
            forms = [
                mo_form(text="GLOS A", time=IN_WINDOW, sender=f"486400{n:05d}", ext_id=f"sent-{n}")
                for n in range(first, first + size)
            ]
            await asyncio.gather(
                *(
                    w.store_message(
                        parse_mo(f, max_text=4096),
                        raw_body=b"raw",
                        charset="utf-8",
                        client_ip="127.0.0.1",
                        received_at=utcnow(),
                    )
                    for f in forms
                )
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", statement)
        await w.stop()
        await engine.dispose()
    assert w.batches == 2
    assert any("conversations" in sql for sql in seen[0])
    assert any("mobitex_id" in sql for sql in seen[0])
    assert seen[0] == seen[1]


async def test_the_writer_plans_each_statement_for_the_tables_as_they_are_now(
    votes: tuple[GroupWriter, Service, Counted],
) -> None:
    """A generic plan made while inbound_messages was empty would go on scanning the whole table
    for every batch's status update as the table grows (see app/db/engine.py)."""
    w, db, _ = votes
    await _batch(w, ["48650000001"])
    lane = w._lanes[0]
    assert lane.pg_conn is not None
    assert (await lane.pg_conn.exec_driver_sql("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    assert await db.scalar("SHOW plan_cache_mode") == "force_custom_plan"
