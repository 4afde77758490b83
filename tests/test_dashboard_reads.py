"""The dashboard's read queries: per-minute counts, the first id since a time, live tallies that add
only new votes yet agree with a full recount."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update

from app.dashboard.counting import MinuteCounter, VoteCounter
from app.dashboard.live import TallyHub
from app.db.engine import create_engine
from app.db.flow_models import Vote
from app.db.migrate import upgrade
from app.db.models import FlowEvent, InboundMessage
from app.flows.loader import load_dir
from app.reads.flow_log import flow_log
from app.reads.overview import _since, today_start
from app.reads.series import first_id_since, per_minute
from app.reads.tally import count_votes, latest_votes, make_tally
from tests.conftest import make_settings, new_sms_id, write_flows
from tests.test_dashboard_pages import VOTE

NOW = datetime(2026, 12, 1, 20, 30, 30, tzinfo=UTC)


def _inbound(at: datetime) -> dict[str, object]:
    return {
        "sms_id": new_sms_id(), "number": "70120", "sender": "48600000001", "text": "x",
        "time": int(at.timestamp()), "charset": "utf-8", "raw_body": b"", "client_ip": "127.0.0.1",
        "received_at": at, "last_received_at": at, "deliveries": 1, "status": "processed",
    }  # fmt: skip


async def _engine(database_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(make_settings(database_url))
    await upgrade(engine)
    return engine


async def test_messages_fall_in_the_minute_they_arrived_in(database_url: str) -> None:
    engine = await _engine(database_url)
    times = [NOW - timedelta(hours=5), NOW - timedelta(minutes=179), NOW - timedelta(seconds=20),
             NOW - timedelta(seconds=25), NOW - timedelta(minutes=1, seconds=1)]  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(InboundMessage), [_inbound(t) for t in times])
    async with engine.connect() as conn:
        series = await conn.run_sync(lambda c: per_minute(c, NOW, hours=3))
        first = await conn.run_sync(
            lambda c: first_id_since(
                c, InboundMessage.id, InboundMessage.received_at, NOW - timedelta(hours=1)
            )
        )
        none = await conn.run_sync(
            lambda c: first_id_since(
                c, InboundMessage.id, InboundMessage.received_at, NOW + timedelta(hours=1)
            )
        )
    await engine.dispose()
    assert series.minutes == 180 and series.start == datetime(2026, 12, 1, 17, 31, tzinfo=UTC)
    assert sum(series.inbound) == 4  # five hours ago is outside the chart
    assert series.inbound[0] == 1  # 17:31:30, in the chart's first minute
    assert series.inbound[-1] == 2 and series.inbound[-2] == 1
    assert sum(series.outbound) == 0
    assert first == 3 and none is None


async def test_a_live_tally_adds_new_votes_and_agrees_with_a_full_recount(
    database_url: str, tmp_path: Path
) -> None:
    engine = await _engine(database_url)
    flow = load_dir(write_flows(tmp_path / "flows", final=VOTE)).flows["final"]
    hub = TallyHub(engine)
    seen = []

    async def add(options: str, start: int) -> None:
        rows = [
            {"flow_id": "final", "flow_hash": flow.hash, "sender": f"4860000{start + i:04d}", "seq": 1,
             "option": o, "inbound_id": start + i, "created_at": NOW, "message_time": 0}
            for i, o in enumerate(options)
        ]  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(insert(Vote), rows)

    await add("AAB", 0)
    stream = hub.watch(flow)
    seen.append(await anext(stream))
    await add("BBBA", 100)
    seen.append(await asyncio.wait_for(anext(stream), 10))
    counts = {o.option: o.votes for o in seen[-1].options}
    async with engine.connect() as conn:
        full, last = await conn.run_sync(lambda c: count_votes(c, "final"))
    assert [(o.option, o.votes) for o in seen[0].options] == [("A", 2), ("B", 1)]
    assert counts == full == {"A": 3, "B": 4} and seen[-1].last_vote_id == last
    assert len(hub.feeds) == 1  # one shared count, however many watch
    other = hub.watch(flow)
    assert (await anext(other)).total == 7
    assert len(hub.feeds) == 1
    await other.aclose()
    await stream.aclose()
    assert hub.feeds == {}  # the last viewer left: the counting stops
    await engine.dispose()


async def test_a_replacing_vote_is_recounted_whole(database_url: str, tmp_path: Path) -> None:
    engine = await _engine(database_url)
    flows = write_flows(tmp_path / "flows", final=VOTE.replace("[vote]", '[vote]\non_repeat = "replace"'))
    flow = load_dir(flows).flows["final"]
    async with engine.begin() as conn:
        await conn.execute(
            insert(Vote),
            [{"flow_id": "final", "flow_hash": flow.hash, "sender": "48600000001", "seq": 1, "option": "A",
              "inbound_id": 1, "created_at": NOW, "message_time": 0}],
        )  # fmt: skip
    stream = TallyHub(engine).watch(flow)
    first = await anext(stream)
    async with engine.begin() as conn:  # the phone changes its mind: the same row, another option
        await conn.execute(update(Vote).values(option="B"))
    second = await asyncio.wait_for(anext(stream), 10)
    await stream.aclose()
    await engine.dispose()
    assert [(o.option, o.votes) for o in first.options] == [("A", 1), ("B", 0)]
    assert [(o.option, o.votes) for o in second.options] == [("A", 0), ("B", 1)]


async def test_latest_votes_of_a_quiet_flow_among_busy_ones_are_found(database_url: str) -> None:
    engine = await _engine(database_url)
    rows = [
        {"flow_id": "quiet" if i in (3, 5) else "busy", "flow_hash": "h", "sender": f"48600{i:06d}", "seq": 1,
         "option": "A", "inbound_id": i, "created_at": NOW, "message_time": 0}
        for i in range(1, 41)
    ]  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(Vote), rows)
    async with engine.connect() as conn:
        quiet = await conn.run_sync(lambda c: latest_votes(c, "quiet", limit=10, recent=10))
        busy = await conn.run_sync(lambda c: latest_votes(c, "busy", limit=3, recent=10))
    await engine.dispose()
    assert [v.sender for v in quiet] == ["48600000005", "48600000003"]
    assert [v.sender for v in busy] == ["48600000040", "48600000039", "48600000038"]


def _votes(flow_hash: str, options: str, first_id: int) -> list[dict[str, object]]:
    return [
        {"id": first_id + i, "flow_id": "final", "flow_hash": flow_hash, "sender": f"48601{first_id + i:06d}",
         "seq": 1, "option": o, "inbound_id": first_id + i, "created_at": NOW, "message_time": 0}
        for i, o in enumerate(options)
    ]  # fmt: skip


async def test_a_vote_committed_late_behind_a_higher_id_is_found_by_the_recount_beside_the_pages(
    database_url: str, tmp_path: Path
) -> None:
    engine = await _engine(database_url)
    flow = load_dir(write_flows(tmp_path / "flows", final=VOTE)).flows["final"]
    counter = TallyHub(engine).counter(flow)
    async with engine.begin() as conn:
        await conn.execute(insert(Vote), _votes(flow.hash, "AB", 10))
    assert (await counter.tally(engine)).total == 2
    async with engine.begin() as conn:  # another writer's transaction commits id 5 after id 11
        await conn.execute(insert(Vote), _votes(flow.hash, "BB", 4))
    assert (await counter.tally(engine)).total == 2  # only ids above the last counted are looked at
    counter.recounts.counted_whole_at = -math.inf  # the recount is due
    during = await counter.tally(engine)  # answers at once from what it had; the recount runs beside
    assert during.total == 2 and counter.recounts.task is not None
    await counter.recounts.task
    after = await counter.tally(engine)
    async with engine.connect() as conn:
        full, last = await conn.run_sync(lambda c: count_votes(c, "final"))
    await engine.dispose()
    assert {o.option: o.votes for o in after.options} == full == {"A": 1, "B": 3}
    assert after.last_vote_id == last == 11


async def test_minute_counts_add_new_rows_and_a_recount_finds_a_late_one(database_url: str) -> None:
    engine = await _engine(database_url)
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
    counter = MinuteCounter(InboundMessage.id, InboundMessage.received_at)
    async with engine.begin() as conn:
        await conn.execute(insert(InboundMessage), [_inbound(now - timedelta(hours=1))])  # before the start
        recent = [_inbound(now - timedelta(minutes=5)) | {"id": 10}, _inbound(now) | {"id": 11}]
        await conn.execute(insert(InboundMessage), recent)
    first = await counter.minutes(engine, start)
    async with engine.begin() as conn:
        await conn.execute(insert(InboundMessage), [_inbound(now) | {"id": 12}, _inbound(now) | {"id": 5}])
    added = await counter.minutes(engine, start)
    counter.recounts.counted_whole_at = -math.inf
    await counter.minutes(engine, start)
    assert counter.recounts.task is not None
    await counter.recounts.task
    recounted = await counter.minutes(engine, start)
    await engine.dispose()
    assert sum(first.values()) == 2 and min(first) >= start
    assert sum(added.values()) == 3  # the new row above the last id; id 5 committed late is not seen
    assert sum(recounted.values()) == 4 and recounted[now.replace(second=0, microsecond=0)] == 3


def test_a_tally_is_rendered_once_per_language_for_all_its_viewers() -> None:
    hub = TallyHub(None)  # type: ignore[arg-type]  # no counting here
    tally = make_tally("final", ["A"], {}, {"A": 1}, 1, NOW)
    made: list[str] = []

    def render(language: str):  # type: ignore[no-untyped-def]
        return lambda t: made.append(language) or f"{language}:{t.total}"

    shown = [hub.fragment(tally, lang, render(lang)) for lang in ("en", "en", "pl", "en")]
    newer = make_tally("final", ["A"], {}, {"A": 2}, 2, NOW)
    shown.append(hub.fragment(newer, "en", render("en")))
    assert shown == ["en:1", "en:1", "pl:1", "en:1", "en:2"]
    assert made == ["en", "pl", "en"]  # once per tally and language, however many viewers


async def test_recent_votes_are_recounted_in_the_page_and_the_old_ones_settle(
    database_url: str, tmp_path: Path
) -> None:
    engine = await _engine(database_url)
    flow = load_dir(write_flows(tmp_path / "flows", final=VOTE)).flows["final"]
    counter = TallyHub(engine).counter(flow)
    now = datetime.now(UTC)
    old = [v | {"created_at": now - timedelta(minutes=20)} for v in _votes(flow.hash, "AAB", 1)]
    async with engine.begin() as conn:
        await conn.execute(insert(Vote), old + [v | {"created_at": now} for v in _votes(flow.hash, "AB", 10)])
    assert (await counter.tally(engine)).total == 5
    assert counter.settled_id == 3 and counter.settled == {"A": 2, "B": 1}  # older than LATE
    async with engine.begin() as conn:  # another writer's transaction commits ids 6 and 7 after id 11
        await conn.execute(insert(Vote), [v | {"created_at": now} for v in _votes(flow.hash, "BB", 6)])
    assert (await counter.tally(engine)).total == 5
    assert not counter.recent_due(engine)
    counter.tails.counted_whole_at = -math.inf
    # Only PostgreSQL has several writers: SQLite never needs the recount of the recent rows.
    assert counter.recent_due(engine) == (engine.dialect.name != "sqlite")
    counter.recent_due = lambda engine: True  # type: ignore[method-assign]
    during = await counter.tally(engine)  # answers at once from what it had; the recount runs beside
    assert during.total == 5 and counter.tails.task is not None and counter.recounts.task is None
    await counter.tails.task
    after = await counter.tally(engine)
    async with engine.connect() as conn:
        full, last = await conn.run_sync(lambda c: count_votes(c, "final"))
    await engine.dispose()
    assert {o.option: o.votes for o in after.options} == full == {"A": 3, "B": 4}
    assert after.last_vote_id == last == 11 and counter.settled_id == 3


async def test_a_flows_event_log_adds_new_events_and_agrees_with_a_full_recount(
    database_url: str, tmp_path: Path
) -> None:
    engine = await _engine(database_url)
    hub = TallyHub(engine)
    now = datetime.now(UTC)

    def events(outcomes: str, first_id: int, flow_hash: str = "h1", flow_id: str = "final") -> list[object]:
        names = {"a": "accepted", "r": "repeat"}
        return [
            {"id": first_id + i, "inbound_id": first_id + i, "sender": "48600000001", "flow_id": flow_id,
             "flow_hash": flow_hash, "outcome": names[o], "created_at": now}
            for i, o in enumerate(outcomes)
        ]  # fmt: skip

    async with engine.begin() as conn:
        await conn.execute(insert(FlowEvent), events("aar", 10) + events("a", 20, flow_id="other"))
    first = await hub.flow_log("final")
    async with engine.begin() as conn:
        await conn.execute(insert(FlowEvent), events("ar", 30, flow_hash="h2") + events("a", 5))  # 5: late
    added = await hub.flow_log("final")
    counter = hub.events["final"]
    counter.recounts.counted_whole_at = -math.inf
    await hub.flow_log("final")
    assert counter.recounts.task is not None
    await counter.recounts.task
    recounted = await hub.flow_log("final")
    async with engine.connect() as conn:
        full = await conn.run_sync(lambda c: flow_log(c, "final"))
    await engine.dispose()
    assert first.outcomes == {"accepted": 2, "repeat": 1} and first.hashes == {"h1": 3}
    assert added.outcomes == {"accepted": 3, "repeat": 2}  # the new ones above the last id
    assert recounted == full
    assert full.outcomes == {"accepted": 4, "repeat": 2} and full.hashes == {"h1": 4, "h2": 2}


async def test_a_recount_of_the_recent_rows_is_dropped_when_a_whole_count_came_in_between(
    tmp_path: Path,
) -> None:
    flow = load_dir(write_flows(tmp_path / "flows", final=VOTE)).flows["final"]
    counter = VoteCounter(flow)
    counter.take(({"A": 5}, 40, {"B": 1}, 41))  # a whole count, taken after the recount started from 30
    await counter._settle(30, ({"A": 2}, 35, {"B": 9}, 50))
    assert (counter.counts(), counter.settled_id, counter.last_id) == ({"A": 5, "B": 1}, 40, 41)
    await counter._settle(40, ({"A": 2}, 45, {"B": 3}, 50))  # started from what is settled: taken
    assert (counter.counts(), counter.settled_id, counter.last_id) == ({"A": 7, "B": 3}, 45, 50)


async def test_todays_totals_add_new_rows_and_a_recount_finds_a_late_one(database_url: str) -> None:
    engine = await _engine(database_url)
    now = datetime.now(UTC)
    hub = TallyHub(engine)
    async with engine.begin() as conn:
        yesterday = today_start(now) - timedelta(minutes=1)
        await conn.execute(insert(InboundMessage), [_inbound(yesterday)])
        await conn.execute(insert(InboundMessage), [_inbound(now) | {"id": 10}, _inbound(now) | {"id": 11}])
    first = await hub.today(now)
    async with engine.begin() as conn:
        await conn.execute(insert(InboundMessage), [_inbound(now) | {"id": 12}, _inbound(now) | {"id": 5}])
    added = await hub.today(now)
    counter = hub.totals["inbound"]
    counter.recounts.counted_whole_at = -math.inf
    await hub.today(now)
    assert counter.recounts.task is not None
    await counter.recounts.task
    recounted = await hub.today(now)
    async with engine.connect() as conn:
        full = await conn.run_sync(lambda c: _since(c, InboundMessage, today_start(now)))
    await engine.dispose()
    assert first == (2, 0)
    assert added == (3, 0)  # the new row above the last id; id 5 committed late is not seen
    assert recounted == (full, 0) == (4, 0)
