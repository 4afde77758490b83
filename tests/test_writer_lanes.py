"""The writer's lanes on PostgreSQL: several batches at once, a phone's messages in one lane.

Two lanes' batches run at the same time only when they overlap on the server, which the machine's
load decides. Where a test needs them to, a transaction of its own holds a row the batches wait
for (a contact, a code) and lets go once both are waiting: from then on they run side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.db.engine import create_engine
from app.db.models import utcnow
from app.errors import DatabaseBusy, DatabaseUnavailable
from app.flows.loader import load_dir
from app.ingest import writer as writer_module
from app.ingest.writer import GroupWriter, lane_of
from app.mobitex.mo_form import parse_mo
from tests.conftest import Service, empty_database, make_settings, mo_form, new_sms_id, write_flows
from tests.test_flow_autoreply import INFO
from tests.test_flow_code import IN_WINDOW as CONTEST_WINDOW
from tests.test_flow_code import contest
from tests.test_flow_vote import IN_WINDOW, vote_flow

CODES = contest('source = "pattern"\npattern = "^[A-Z]{3}[0-9]{3}$"', per_sender=1)
# Replies for the sample phone only: every other phone's INFO fails, HELLO always works.
BROKEN_INFO = INFO.replace("Cześć {{ sender }}!", "{{ 1 // ((sender == '48600123456') | int) }}").replace(
    "transliterate = true\n", ""
)
HELLO = INFO.replace('id = "info"', 'id = "hello"').replace(
    'keywords = ["INFO", "POMOC"]', 'keywords = ["HELLO"]'
)


def phones_of(lane: int, lanes: int, count: int, first: int = 0) -> list[str]:
    """``count`` phones whose messages go to ``lane`` of ``lanes``."""
    found = []
    n = first
    while len(found) < count:
        phone = f"48601{n:06d}"
        if lane_of(phone, lanes) == lane:
            found.append(phone)
        n += 1
    return found


def store(w: GroupWriter, sender: str, text: str = "GLOS A", **fields: str) -> Awaitable[None]:
    form = mo_form(text=text, sender=sender, time=fields.pop("time", IN_WINDOW), **fields)
    msg = parse_mo(form, max_text=4096)
    return w.store_message(msg, raw_body=b"raw", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow())


Open = Callable[..., Any]


@pytest.fixture
def lanes_writer(pg_database: str, tmp_path: Path) -> Open:
    """A writer of ``lanes`` lanes on the run's PostgreSQL database (emptied), with the given flows."""

    @asynccontextmanager
    async def open_writer(
        lanes: int, on_commit: Callable[[], None] | None = None, **flow_files: str
    ) -> AsyncIterator[tuple[GroupWriter, Service]]:
        await empty_database(pg_database)
        flows_dir = write_flows(tmp_path / "flows", **flow_files)
        settings = make_settings(pg_database, flows_dir=str(flows_dir))
        engine = create_engine(settings)
        flows = load_dir(flows_dir)
        w = GroupWriter(engine, flows=lambda: flows, lanes=lanes, on_commit=on_commit)
        await w.start()
        try:
            yield w, Service(settings, "", engine, None)  # type: ignore[arg-type]
        finally:
            await w.stop()
            await engine.dispose()

    return open_writer


async def waiting(engine: AsyncEngine, count: int) -> None:
    """Return once ``count`` connections of the database wait for a lock."""
    for _ in range(500):
        async with engine.connect() as conn:
            n = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            ).scalar_one()
        if n >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} connection(s) never waited for a lock")


@asynccontextmanager
async def holding(engine: AsyncEngine, *statements: str) -> AsyncIterator[AsyncConnection]:
    """A transaction of the test's own that ran ``statements`` (and so holds their rows) until
    the block ends; it rolls back. It never ends a deadlock itself: the writer's side does."""
    async with engine.connect() as conn:
        await conn.execute(text("BEGIN"))
        await conn.execute(text("SET LOCAL deadlock_timeout = '60s'"))
        for sql in statements:
            await conn.execute(text(sql))
        try:
            yield conn
        finally:
            await conn.execute(text("ROLLBACK"))


def new_contact(phone: str) -> str:
    columns = "phone, first_seen, last_seen, messages"
    return f"INSERT INTO contacts ({columns}) VALUES ('{phone}', now(), now(), 0)"


pytestmark = pytest.mark.postgres


async def test_a_phone_always_goes_to_the_same_lane_and_its_messages_keep_their_order(
    lanes_writer: Open,
) -> None:
    phones = [f"48602{n:06d}" for n in range(12)]
    assert {lane_of(p, 3) for p in phones} == {0, 1, 2}
    assert [lane_of(p, 3) for p in phones] == [lane_of(p, 3) for p in phones]
    async with lanes_writer(3, final=vote_flow(per_sender=4)) as (w, db):
        written: list[tuple[Any, list[str]]] = []  # (connection, senders) of each batch's upsert

        def executed(conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
            if isinstance(params, dict) and isinstance(params.get("sender"), list):
                written.append((conn, list(params["sender"])))

        event.listen(db.engine.sync_engine, "before_execute", executed)
        try:
            # Round after round, each phone's next message: every batch mixes phones.
            forms = [(p, new_sms_id()) for _ in range(4) for p in phones]
            await asyncio.gather(*(store(w, p, "GLOS A", sms_id=s) for p, s in forms))
        finally:
            event.remove(db.engine.sync_engine, "before_execute", executed)
        lanes = {id(lane.pg_conn.sync_connection): lane.number for lane in w._lanes if lane.pg_conn}
        assert len(lanes) == 3
        assert written
        for conn, senders in written:
            assert {lane_of(s, 3) for s in senders} == {lanes[id(conn)]}, senders
        assert {lanes[id(conn)] for conn, _ in written} == {0, 1, 2}
        rows = await db.rows("SELECT sms_id, sender, id FROM inbound_messages")
        ids = {sms_id: (sender, id_) for sms_id, sender, id_ in rows}
        for phone in phones:
            mine = [ids[s][1] for p, s in forms if p == phone]
            assert mine == sorted(mine), f"{phone}'s messages were stored out of order"
        # Each phone's 4 votes, in order: seq follows the message order.
        seqs = await db.rows("SELECT sender, array_agg(seq ORDER BY inbound_id) FROM votes GROUP BY sender")
        assert {p: list(s) for p, s in seqs} == {p: [1, 2, 3, 4] for p in phones}


async def test_one_sms_id_in_two_lanes_at_once_is_stored_and_decided_once(lanes_writer: Open) -> None:
    """The second lane's upsert waits for the first lane's commit, then only adds a delivery."""
    (first,) = phones_of(0, 2, 1)
    (second,) = phones_of(1, 2, 1)
    sms_id = new_sms_id()
    async with lanes_writer(2, final=vote_flow()) as (w, db):
        async with holding(db.engine, new_contact(first)):
            # The first lane inserts the message, then waits for the contact held here.
            one = asyncio.ensure_future(store(w, first, sms_id=sms_id))
            await waiting(db.engine, 1)
            # The second lane's insert of the same sms_id waits for the first lane.
            two = asyncio.ensure_future(store(w, second, sms_id=sms_id))
            await waiting(db.engine, 2)
        assert await asyncio.gather(one, two) == [None, None]
        rows = await db.rows("SELECT sender, deliveries, status FROM inbound_messages")
        assert [tuple(r) for r in rows] == [(first, 2, "processed")]
        assert await db.scalar("SELECT count(*) FROM votes") == 1
        assert await db.scalar("SELECT count(*) FROM outbox") == 1
        assert await db.scalar("SELECT count(*) FROM flow_events") == 1
        contacts = await db.rows("SELECT phone, messages FROM contacts")
        assert [tuple(r) for r in contacts] == [(first, 1)]


async def test_a_code_two_phones_redeem_at_once_in_two_lanes_has_one_winner(lanes_writer: Open) -> None:
    (first,) = phones_of(0, 2, 1)
    (second,) = phones_of(1, 2, 1)
    async with lanes_writer(2, summer=CODES) as (w, db):
        async with holding(db.engine, new_contact(first), new_contact(second)):
            both = [
                asyncio.ensure_future(store(w, phone, "KOD ABC123", time=CONTEST_WINDOW))
                for phone in (first, second)
            ]
            await waiting(db.engine, 2)  # both lanes' batches are under way; they go on together
        assert await asyncio.gather(*both) == [None, None]
        assert await db.scalar("SELECT count(*) FROM redemptions WHERE code = 'ABC123'") == 1
        outcomes = await db.rows("SELECT outcome FROM flow_events ORDER BY outcome")
        assert [r[0] for r in outcomes] == ["accepted", "used"]
        statuses = await db.rows("SELECT status FROM inbound_messages")
        assert [r[0] for r in statuses] == ["processed", "processed"]


async def test_stop_commits_what_every_lane_holds(lanes_writer: Open) -> None:
    phones = [p for lane in range(3) for p in phones_of(lane, 3, 10, first=100)]
    async with lanes_writer(3, final=vote_flow()) as (w, db):
        held = [phones_of(lane, 3, 1, first=100)[0] for lane in range(3)]
        async with holding(db.engine, *(new_contact(p) for p in held)):
            stores = [asyncio.ensure_future(store(w, p)) for p in held]
            await waiting(db.engine, 3)  # every lane's first batch waits for its contact
            stores += [asyncio.ensure_future(store(w, p)) for p in phones if p not in held]
            await asyncio.sleep(0.05)
            assert all(lane.queue.qsize() > 0 for lane in w._lanes)  # queued behind it
            stopping = asyncio.ensure_future(w.stop())
            await asyncio.sleep(0.1)
            assert not stopping.done()
        await stopping
        assert await asyncio.gather(*stores) == [None] * len(phones)
        with pytest.raises(DatabaseUnavailable):
            await store(w, phones[0])
        assert await db.scalar("SELECT count(*) FROM votes") == len(phones)
        assert await db.scalar("SELECT count(*) FROM outbox") == len(phones)


async def test_a_flow_failing_in_one_lane_leaves_the_other_lanes_batch_committed(lanes_writer: Open) -> None:
    failing, fine = phones_of(0, 2, 2, first=200)
    others = phones_of(1, 2, 5, first=200)
    async with lanes_writer(2, info=BROKEN_INFO, hello=HELLO) as (w, db):
        async with holding(db.engine, new_contact(failing), new_contact(others[0])):
            stores = [
                asyncio.ensure_future(store(w, failing, "INFO")),
                asyncio.ensure_future(store(w, fine, "HELLO")),
                *(asyncio.ensure_future(store(w, p, "HELLO")) for p in others),
            ]
            await waiting(db.engine, 2)
        assert await asyncio.gather(*stores) == [None] * 7
        statuses = dict(await db.rows("SELECT sender, status FROM inbound_messages"))
        assert statuses.pop(failing) == "failed"
        assert statuses == dict.fromkeys([fine, *others], "processed")
        assert await db.scalar("SELECT count(*) FROM outbox") == 6


async def test_each_lane_wakes_the_dispatcher_once_its_replies_are_committed(lanes_writer: Open) -> None:
    (first,) = phones_of(0, 2, 1, first=300)
    (second,) = phones_of(1, 2, 1, first=300)
    queued: list[int] = []  # replies committed when each wake-up came
    engine: list[AsyncEngine] = []

    def wake() -> None:
        queued.append(-1)  # replaced below by the count the database shows at that moment
        asyncio.get_running_loop().create_task(count(len(queued) - 1))

    async def count(n: int) -> None:
        async with engine[0].connect() as conn:
            queued[n] = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one()

    async with lanes_writer(2, on_commit=wake, final=vote_flow()) as (w, db):
        engine.append(db.engine)
        async with holding(db.engine, new_contact(first), new_contact(second)):
            both = [asyncio.ensure_future(store(w, p)) for p in (first, second)]
            await waiting(db.engine, 2)
        await asyncio.gather(*both)
        await store(w, first, "NOTHING TO DO")  # no flow acts: no reply, no wake-up
        for _ in range(100):
            if -1 not in queued:
                break
            await asyncio.sleep(0.02)
    assert len(queued) == 2
    assert queued[-1] == 2 and queued[0] >= 1


async def test_a_batch_the_database_ends_for_a_deadlock_runs_again_and_loses_nothing(
    lanes_writer: Open,
) -> None:
    first, second = "48603000001", "48603000002"  # the batch locks their contacts in this order
    async with lanes_writer(1, final=vote_flow()) as (w, db):
        async with db.engine.begin() as conn:
            await conn.execute(text(new_contact(first)))
            await conn.execute(text(new_contact(second)))
        hold = f"UPDATE contacts SET messages = messages WHERE phone = '{second}'"
        async with holding(db.engine, hold) as t:
            both = [asyncio.ensure_future(store(w, phone)) for phone in (first, second)]
            await waiting(db.engine, 1)  # the batch holds the first contact and waits for the second
            # Waiting for the first contact here closes the circle: the database ends the batch.
            await t.execute(text(f"UPDATE contacts SET messages = messages WHERE phone = '{first}'"))
        assert await asyncio.gather(*both) == [None, None]
        assert w.batches == 1
        assert await db.scalar("SELECT count(*) FROM votes") == 2
        contacts = await db.rows("SELECT phone, messages FROM contacts ORDER BY phone")
        assert [tuple(r) for r in contacts] == [(first, 1), (second, 1)]


@pytest.mark.parametrize("tries", [2, 3])
async def test_a_flow_ended_by_deadlocks_at_every_try_fails_its_request_and_keeps_no_failed_message(
    lanes_writer: Open, monkeypatch: pytest.MonkeyPatch, tries: int
) -> None:
    """A batch ended by a deadlock at each of its tries answers its requests with an error that
    says the database is busy (Mobitex sends them again): a flow's deadlock never marks a message
    failed. With one try more, the same batch goes through once the other transaction ends."""
    monkeypatch.setattr(writer_module, "DEADLOCK_TRIES", tries)
    first, second = "48604000001", "48604000002"
    taken = (
        "INSERT INTO redemptions (flow_id, flow_hash, code, sender, seq, inbound_id, created_at) "
        "VALUES ('summer', 'x', '{code}', '48604999999', {seq}, 9000 + {seq}, now())"
    )
    async with lanes_writer(1, summer=CODES) as (w, db):
        async with holding(db.engine, taken.format(code="BBB222", seq=2)) as t:
            both = [
                asyncio.ensure_future(store(w, phone, text, time=CONTEST_WINDOW))
                for phone, text in ((first, "KOD AAA111"), (second, "KOD BBB222"))
            ]
            await waiting(db.engine, 1)  # AAA111 redeemed, BBB222 waits for the code held here
            await t.execute(text(taken.format(code="AAA111", seq=1)))  # deadlock: the batch ends
            # Run again, the batch now waits for AAA111; wanting the contact it has just inserted
            # closes another circle.
            await waiting(db.engine, 1)
            await t.execute(text(new_contact(first)))
        results = await asyncio.gather(*both, return_exceptions=True)
        if tries == 3:  # the third try waited for this transaction's locks, then went through
            assert results == [None, None]
            redeemed = await db.rows("SELECT code, sender FROM redemptions ORDER BY code")
            assert [tuple(r) for r in redeemed] == [("AAA111", first), ("BBB222", second)]
            return
        assert all(isinstance(r, DatabaseBusy) for r in results), results
        assert await db.scalar("SELECT count(*) FROM inbound_messages") == 0
        # Mobitex's next delivery goes through.
        await asyncio.gather(store(w, first, "KOD AAA111", time=CONTEST_WINDOW))
        assert await db.scalar("SELECT status FROM inbound_messages") == "processed"
        assert await db.scalar("SELECT code FROM redemptions") == "AAA111"
