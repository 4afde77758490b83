"""The group-commit writer, driven directly: grouping, duplicate folding, isolation of bad rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.models import utcnow
from app.errors import Conflict, DatabaseUnavailable
from app.ingest.writer import GroupWriter, _merge_duplicates
from app.mobitex.mo_form import parse_mo
from tests.conftest import Service, make_settings, mo_form, running


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[tuple[GroupWriter, Service]]:
    settings = make_settings(database_url)
    engine = create_engine(settings)
    await upgrade(engine)
    w = GroupWriter(engine, batch_max=512)
    await w.start()
    yield w, Service(settings, "", engine, None)  # type: ignore[arg-type]
    await w.stop()
    await engine.dispose()


def _store(w: GroupWriter, **fields: str) -> Any:
    msg = parse_mo(mo_form(**fields), max_text=4096)
    return w.store_message(msg, raw_body=b"raw", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow())


async def test_requests_queued_together_commit_in_one_transaction(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, db = writer
    await asyncio.gather(*(_store(w) for _ in range(100)))
    assert w.rows == 100
    assert w.batches == 1
    assert await db.scalar("SELECT count(*) FROM inbound_messages") == 100


async def test_duplicates_inside_one_batch_are_folded_into_the_delivery_count(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, db = writer
    sms_id = "d" * 32
    await asyncio.gather(*(_store(w, sms_id=sms_id) for _ in range(7)), _store(w))
    await _store(w, sms_id=sms_id)
    assert await db.scalar("SELECT deliveries FROM inbound_messages WHERE sms_id = :s", s=sms_id) == 8
    assert await db.scalar("SELECT count(*) FROM inbound_messages") == 2


async def test_a_row_the_database_refuses_does_not_fail_its_neighbours(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, db = writer
    bad = w.quarantine(
        raw_body=b"x",
        content_type=None,
        client_ip="127.0.0.1",
        reason=None,  # type: ignore[arg-type]
        received_at=utcnow(),
    )
    results = await asyncio.gather(_store(w), bad, _store(w), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert await db.scalar("SELECT count(*) FROM inbound_messages") == 2


async def test_stopped_writer_refuses_with_database_unavailable(writer: tuple[GroupWriter, Service]) -> None:
    w, _ = writer
    await w.stop()
    with pytest.raises(DatabaseUnavailable):
        await _store(w)


async def test_a_message_repaired_from_a_request_no_longer_held_is_refused_alone(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, svc = writer
    await w.quarantine(
        raw_body=b"x", content_type=None, client_ip="127.0.0.1", reason="bad", received_at=utcnow()
    )
    qid = await svc.scalar("SELECT id FROM quarantine")
    repaired = parse_mo(mo_form(), max_text=4096)
    first = w.store_message(
        repaired, raw_body=b"x", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow(), resolves=qid
    )
    second = w.store_message(
        repaired, raw_body=b"x", charset="utf-8", client_ip="127.0.0.1", received_at=utcnow(), resolves=qid
    )
    results = await asyncio.gather(first, second, _store(w), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Conflict)
    assert await svc.scalar("SELECT status FROM quarantine WHERE id = :q", q=qid) == "reingested"
    assert await svc.scalar("SELECT count(*) FROM inbound_messages") == 2
    assert (
        await svc.scalar("SELECT deliveries FROM inbound_messages WHERE sms_id = :s", s=repaired.sms_id) == 1
    )


def test_folding_duplicates_leaves_each_requests_own_row_as_it_came() -> None:
    # A batch that fails is retried request by request from these rows: folding must not have
    # added the neighbours' deliveries to them.
    first, later = utcnow(), utcnow()
    rows = [
        {"sms_id": "a" * 32, "deliveries": 1, "last_received_at": first},
        {"sms_id": "b" * 32, "deliveries": 1, "last_received_at": first},
        {"sms_id": "a" * 32, "deliveries": 1, "last_received_at": later},
    ]
    before = [dict(r) for r in rows]
    merged = _merge_duplicates(rows)
    assert rows == before
    assert [(m["sms_id"][0], m["deliveries"], m["last_received_at"]) for m in merged] == [
        ("a", 2, later),
        ("b", 1, first),
    ]


async def test_a_waiter_cancelled_before_its_commit_leaves_its_row_to_the_batch(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, db = writer
    gone = asyncio.ensure_future(_store(w))
    others = [asyncio.ensure_future(_store(w)) for _ in range(3)]
    await asyncio.sleep(0)  # every request is queued, none committed
    gone.cancel()
    assert await asyncio.gather(*others) == [None, None, None]
    assert gone.cancelled()
    assert await db.scalar("SELECT count(*) FROM inbound_messages") == 4


async def test_a_cancelled_waiter_in_a_batch_retried_row_by_row_fails_no_neighbour(
    writer: tuple[GroupWriter, Service],
) -> None:
    w, db = writer
    bad = asyncio.ensure_future(
        w.quarantine(
            raw_body=b"x",
            content_type=None,
            client_ip="127.0.0.1",
            reason=None,  # type: ignore[arg-type]
            received_at=utcnow(),
        )
    )
    gone, kept = asyncio.ensure_future(_store(w)), asyncio.ensure_future(_store(w))
    await asyncio.sleep(0)
    gone.cancel()
    results = await asyncio.gather(bad, kept, return_exceptions=True)
    assert isinstance(results[0], IntegrityError)
    assert results[1] is None
    assert await db.scalar("SELECT count(*) FROM inbound_messages") == 2


async def test_the_service_writes_in_the_lanes_the_setting_asks_for_and_in_one_on_sqlite(
    database_url: str,
) -> None:
    async with running(make_settings(database_url, writer_lanes="3")) as svc:
        assert svc.app is not None
        assert svc.app.state.writer.lanes == (1 if svc.settings.is_sqlite else 3)
        await _store(svc.app.state.writer)
        assert await svc.scalar("SELECT count(*) FROM inbound_messages") == 1
