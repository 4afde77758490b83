"""Flows over a whole writer batch: deciding many votes in one statement changes no outcome.

The writer hands the flow engine every message of a group commit at once; the engine routes them
first (all but those of phones in a survey) and lets a vote flow insert the batch's first votes with
one statement. These tests put several messages in one batch (``batches == 1`` proves it) and check
that every vote, outcome, reply and event is what message-by-message processing gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from app.db.engine import create_engine, create_sqlite_writer_engine
from app.db.migrate import upgrade
from app.db.models import utcnow
from app.flows.loader import FlowSet, load_dir
from app.ingest.writer import GroupWriter
from app.mobitex.mo_form import parse_mo
from tests.conftest import Service, make_settings, mo_form, write_flows
from tests.test_flow_vote import AFTER, IN_WINDOW, vote_flow
from tests.test_replay import vote as replay_vote

# A two-question survey on the vote's number; another flow's keyword mid-survey aborts it.
SURVEY = """
id = "opinia"
kind = "survey"
numbers = ["70120"]
keywords = ["ANKIETA"]

[[survey.steps]]
id = "rating"
type = "integer"
ask = "Jak oceniasz program od 1 do 10?"
min = 1
max = 10

[[survey.steps]]
id = "again"
type = "choice"
ask = "Obejrzysz ponownie? TAK/NIE"
choices = { TAK = ["T"], NIE = ["N"] }

[replies]
done = "Dziękujemy!"
aborted = "Ankieta przerwana."
"""

Batch = Callable[[list[dict[str, str]]], Any]
Opener = Callable[[Path], Any]


@pytest.fixture
def batch_writer(database_url: str) -> Opener:
    """A writer with the flows of a folder; ``send`` puts a list of MO forms in one batch."""

    @asynccontextmanager
    async def open_writer(flows_dir: Path) -> AsyncIterator[tuple[Batch, GroupWriter, Service]]:
        settings = make_settings(database_url, flows_dir=str(flows_dir))
        engine = create_engine(settings)
        await upgrade(engine)
        flows: FlowSet = load_dir(flows_dir)
        sync_engine = create_sqlite_writer_engine(settings) if settings.is_sqlite else None
        w = GroupWriter(engine, flows=lambda: flows, sync_engine=sync_engine)
        await w.start()

        async def send(forms: list[dict[str, str]]) -> None:
            stores = []
            for form in forms:
                msg = parse_mo(form, max_text=4096)
                stores.append(
                    w.store_message(
                        msg, raw_body=b"raw", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow()
                    )
                )
            await asyncio.gather(*stores)

        try:
            yield send, w, Service(settings, "", engine, None)  # type: ignore[arg-type]
        finally:
            await w.stop()
            if sync_engine is not None:
                sync_engine.dispose()
            await engine.dispose()

    return open_writer


async def _outcomes(db: Service, forms: list[dict[str, str]]) -> list[tuple[str, str | None]]:
    """(event outcome, text of the reply the event names) per form, in the order sent."""
    rows = await db.rows(
        "SELECT m.sms_id, e.outcome, o.text, o.to_number, m.sender FROM flow_events e "
        "JOIN inbound_messages m ON m.id = e.inbound_id LEFT JOIN outbox o ON o.id = e.reply_id"
    )
    by_sms = {r[0]: r for r in rows}
    assert len(by_sms) == len(rows) == len(forms)
    for r in rows:
        assert r[2] is None or r[3] == r[4]  # a reply goes back to the phone that wrote
    return [(by_sms[f["sms_id"]][1], by_sms[f["sms_id"]][2]) for f in forms]


async def test_one_batch_decides_votes_exactly_as_message_by_message(
    batch_writer: Opener, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote_flow())
    forms = [
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="glos 2", time=IN_WINDOW, sender="48600000002"),
        mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000001"),  # the same phone again
        mo_form(text="GLOS C", time=IN_WINDOW, sender="48600000003"),  # no such option
        mo_form(text="GLOS A", time=AFTER, sender="48600000004"),  # after the window
        mo_form(text="HELLO", time=IN_WINDOW, sender="48600000005"),  # no flow
        mo_form(text="GLOS ANNA", time=IN_WINDOW, sender="48600000006"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(forms)
        assert w.batches == 1
        votes = dict(await db.rows("SELECT sender, option FROM votes"))
        assert votes == {"48600000001": "A", "48600000002": "B", "48600000006": "A"}
        assert await _outcomes(db, forms) == [
            ("accepted", "Dziękujemy! Głos na Anna przyjęty."),
            ("accepted", "Dziękujemy! Głos na Bartek przyjęty."),
            ("repeat", "Twój głos już mamy."),
            ("invalid", "Wyślij GLOS A lub GLOS B."),
            ("closed", "Głosowanie zakończone."),
            ("unmatched", None),
            ("accepted", "Dziękujemy! Głos na Anna przyjęty."),
        ]
        assert await db.scalar("SELECT count(*) FROM outbox") == 6


async def test_a_batch_votes_after_a_vote_already_stored(batch_writer: Opener, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=vote_flow())
    first = [mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000001")]
    then = [
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000002"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(first)
        await send(then)
        assert w.batches == 2
        assert dict(await db.rows("SELECT sender, option FROM votes")) == {
            "48600000001": "B",
            "48600000002": "A",
        }
        assert [o for o, _ in await _outcomes(db, first + then)] == ["accepted", "repeat", "accepted"]


async def test_replace_and_per_sender_limits_hold_inside_one_batch(
    batch_writer: Opener, tmp_path: Path
) -> None:
    flows = write_flows(
        tmp_path / "flows",
        final=vote_flow(1, "replace"),
        multi=vote_flow(2).replace('"final"', '"multi"').replace('"GLOS", "VOTE"', '"MULTI"'),
    )
    forms = [
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="MULTI A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="MULTI B", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="MULTI A", time=IN_WINDOW, sender="48600000001"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(forms)
        assert w.batches == 1
        rows = await db.rows("SELECT flow_id, seq, option FROM votes ORDER BY flow_id, seq")
        assert [tuple(r) for r in rows] == [("final", 1, "B"), ("multi", 1, "A"), ("multi", 2, "B")]
        outcomes = [o for o, _ in await _outcomes(db, forms)]
        assert outcomes == ["accepted", "replaced", "accepted", "accepted", "repeat"]


async def test_a_flow_failing_in_a_batch_leaves_the_others_votes_counted_once(
    batch_writer: Opener, tmp_path: Path
) -> None:
    # "final" works; "poll" divides by zero when it answers any phone but the sample one.
    flows = write_flows(
        tmp_path / "flows",
        final=replay_vote("final", "GLOS", broken=False),
        poll=replay_vote("poll", "ANKIETA"),
    )
    forms = [
        mo_form(text="GLOS A", sender="48600000001"),
        mo_form(text="ANKIETA A", sender="48600000002"),
        mo_form(text="GLOS B", sender="48600000003"),
        mo_form(text="GLOS A", sender="48600000001"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(forms)
        assert w.batches == 1
        statuses = dict(await db.rows("SELECT sms_id, status FROM inbound_messages"))
        assert [statuses[f["sms_id"]] for f in forms] == ["processed", "failed", "processed", "processed"]
        rows = await db.rows("SELECT flow_id, sender, option FROM votes ORDER BY sender")
        assert [tuple(r) for r in rows] == [("final", "48600000001", "A"), ("final", "48600000003", "B")]
        assert await db.scalar("SELECT count(*) FROM outbox") == 2  # "repeat" has no reply here
        events = await db.rows("SELECT outcome FROM flow_events ORDER BY id")
        assert sorted(r[0] for r in events) == ["accepted", "accepted", "repeat"]
        # Run again after the failure, the batch still stores each delivery and counts each
        # phone's messages once.
        assert await db.scalar("SELECT sum(deliveries) FROM inbound_messages") == 4
        contacts = dict(await db.rows("SELECT phone, messages FROM contacts"))
        assert contacts == {"48600000001": 2, "48600000002": 1, "48600000003": 1}


async def test_with_a_survey_loaded_a_phone_that_opens_it_is_routed_in_order(
    batch_writer: Opener, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote_flow(), opinia=SURVEY)
    forms = [
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="ANKIETA", time=IN_WINDOW, sender="48600000002"),
        mo_form(text="7", time=IN_WINDOW, sender="48600000002"),  # answers the question just asked
        mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000002"),  # aborts the survey, then votes
        mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000003"),
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(forms)
        assert w.batches == 1
        outcomes = [o for o, _ in await _outcomes(db, forms)]
        assert outcomes == ["accepted", "started", "answered", "accepted", "accepted", "repeat"]
        votes = dict(await db.rows("SELECT sender, option FROM votes"))
        assert votes == {"48600000001": "A", "48600000002": "B", "48600000003": "B"}
        answers = await db.rows("SELECT step, value FROM survey_answers")
        assert [tuple(r) for r in answers] == [("rating", "7")]
        assert await db.scalar("SELECT status FROM conversations") == "aborted"


async def test_a_phone_already_in_a_survey_keeps_its_conversation_in_a_batch(
    batch_writer: Opener, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote_flow(), opinia=SURVEY)
    started = [mo_form(text="ANKIETA", time=IN_WINDOW, sender="48600000002")]
    then = [
        mo_form(text="GLOS A", time=IN_WINDOW, sender="48600000001"),
        mo_form(text="8", time=IN_WINDOW, sender="48600000002"),
        mo_form(text="TAK", time=IN_WINDOW, sender="48600000002"),
        mo_form(text="GLOS B", time=IN_WINDOW, sender="48600000004"),
    ]
    async with batch_writer(flows) as (send, w, db):
        await send(started)
        await send(then)
        assert w.batches == 2
        outcomes = [o for o, _ in await _outcomes(db, started + then)]
        assert outcomes == ["started", "accepted", "answered", "completed", "accepted"]
        answers = await db.rows("SELECT step, value FROM survey_answers ORDER BY id")
        assert [tuple(r) for r in answers] == [("rating", "8"), ("again", "TAK")]
        assert dict(await db.rows("SELECT sender, option FROM votes")) == {
            "48600000001": "A",
            "48600000004": "B",
        }
