"""Winner draws: the algorithm, the record that verifies, the rule, rounds, concurrency, CLI and API."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.db.engine import create_engine
from app.draws import (
    ALGORITHM,
    DrawAlreadyMade,
    DrawError,
    DrawRecord,
    DrawRequest,
    decode,
    encode,
    list_rounds,
    pick,
    run_draw,
    verify,
)
from app.draws.canonical import PseudonymKeyMissing, canonical, list_sha256, mask, pseudonym, seed_sha256
from app.draws.entries import DrawRule
from app.draws.record import FORMAT, Pick, RecordEntry
from app.flows.loader import find_flow
from tests.conftest import Service, make_settings, running, send_mo, write_flows
from tests.test_flows_cli import arun_cli

KEY = "test-pseudonym-key"
VOTE = """
id = "final"
kind = "vote"
name = "Finał"
numbers = ["70120"]
keywords = ["GLOS"]
starts = 2025-12-01T20:00:00+01:00
ends = 2025-12-01T22:00:00+01:00

[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }
per_sender = 3

[replies]
accepted = "Głos przyjęty."
"""
STOP = """
id = "stop"
kind = "optout"
keywords = ["STOP"]

[optout]
start_keywords = ["START"]

[replies]
opted_out = "Nie wyślemy więcej wiadomości."
opted_in = "Znowu możemy pisać."
"""
PRIZE = """
id = "prize"
kind = "reply"
numbers = ["70120"]

[reply]
tag = "prize"
answers = { accepted = ["TAK"], declined = ["NIE"] }

[replies]
accepted = "Gratulujemy, nagroda przyjęta."
declined = "Szkoda. Nagroda przejdzie na rezerwowego."
unknown = "Odpisz TAK albo NIE."
expired = "Czas minął."
already = "Mamy już odpowiedź."
"""
IN_WINDOW = 1764619200  # 2025-12-01 21:00 Warsaw
PHONES = [f"4860000{n:04d}" for n in range(1, 13)]
STAFF, STOPPED = PHONES[0], PHONES[1]


# -- the algorithm and the record, without a database ------------------------------------------


def test_selection_is_pinned_to_its_documented_output() -> None:
    # docs/draws.md prints this example; a change here is a new algorithm version.
    assert ALGORITHM == "hmac-sha256-rejection/1"
    assert pick("lotto 2026-12-01: 4 9 17 23 35 41", 10, 4) == [5, 6, 0, 4]


def test_docs_reimplementation_picks_the_same_entries() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "draws.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", docs, re.S)
    assert code is not None, "docs/draws.md prints the algorithm in a python block"
    scope: dict[str, object] = {}
    exec(code.group(1), scope)
    for seed, count, k in (("abc", 1, 1), ("lotto", 97, 10), ("x" * 64, 1000, 25)):
        assert scope["draw"](seed, count, k) == pick(seed, count, k)  # type: ignore[operator]


def _record(ids: list[str], seed: str, winners: int, reserves: int) -> DrawRecord:
    ordered = canonical(set(ids))
    chosen = [ordered[p] for p in pick(seed, len(ordered), winners + reserves)]
    now = datetime(2026, 12, 1, 21, tzinfo=UTC)
    picks = [Pick(n, i, "48600***000") for n, i in enumerate(chosen, start=1)]
    return DrawRecord(
        format=FORMAT,
        flow="final",
        flow_name="Finał",
        flow_kind="vote",
        flow_hash="abc",
        round=1,
        reason=None,
        rule=DrawRule("accepted votes", "phone", None, None, "excluded", 0, None),
        algorithm=ALGORITHM,
        entries_count=len(ordered),
        entries_sha256=list_sha256(ordered),
        seed=seed,
        seed_source="given",
        seed_sha256=seed_sha256(seed),
        committed_at=now,
        drawn_at=now,
        drawn_by="test",
        winners=picks[:winners],
        reserves=picks[winners:],
        entries=[RecordEntry(i, "48600***000") for i in ordered],
    )


entry_ids = st.lists(st.from_regex(r"\A[pVC][0-9a-f]{1,16}\Z"), min_size=1, max_size=200, unique=True)


@settings(max_examples=150, deadline=None)
@given(
    ids=entry_ids,
    seed=st.text(min_size=1, max_size=80),
    winners=st.integers(1, 10),
    reserves=st.integers(0, 5),
)
def test_same_record_gives_the_same_winners(ids: list[str], seed: str, winners: int, reserves: int) -> None:
    record = _record(ids, seed, winners, reserves)
    again = decode(encode(record))
    assert verify(again).ok, verify(again).problems
    drawn = [p.id for p in [*record.winners, *record.reserves]]
    assert len(drawn) == len(set(drawn)) == min(len(ids), winners + reserves)
    assert pick(seed, len(ids), winners + reserves) == pick(seed, len(ids), winners + reserves)


@settings(max_examples=100, deadline=None)
@given(ids=entry_ids, seed=st.text(min_size=1, max_size=40), data=st.data())
def test_a_changed_entry_list_changes_the_hash_and_fails_verification(
    ids: list[str], seed: str, data: st.DataObject
) -> None:
    record = _record(ids, seed, 1, 0)
    entries = list(record.entries)
    if data.draw(st.booleans()) and len(entries) > 1:
        del entries[data.draw(st.integers(0, len(entries) - 1))]
    else:
        entries = canonical_entries([*entries, RecordEntry("Zadded", "48600***999")])
    forged = msgspec.structs.replace(record, entries=entries)
    assert list_sha256(e.id for e in entries) != record.entries_sha256
    result = verify(forged)
    assert not result.ok
    assert any("SHA-256" in p or "entries" in p for p in result.problems)


def canonical_entries(entries: list[RecordEntry]) -> list[RecordEntry]:
    return sorted(entries, key=lambda e: e.id.encode())


def test_other_seed_or_forged_winner_fails_verification() -> None:
    record = _record([f"V{n}" for n in range(50)], "seed-1", 3, 1)
    assert not verify(msgspec.structs.replace(record, seed="seed-2")).ok
    other = next(e.id for e in record.entries if e.id not in {p.id for p in record.winners})
    forged = msgspec.structs.replace(record, winners=[Pick(1, other, "x"), *record.winners[1:]])
    assert any("picks" in p for p in verify(forged).problems)


def test_pick_has_no_repeats_and_stops_at_the_list_size() -> None:
    assert sorted(pick("s", 5, 50)) == [0, 1, 2, 3, 4]
    assert pick("s", 0, 3) == []


def test_masks_and_pseudonyms_reveal_no_number() -> None:
    assert mask("48600123456") == "48600***456"
    p = pseudonym(KEY, "48600123456")
    assert re.fullmatch(r"p[0-9a-f]{16}", p) and "600123456" not in p
    assert pseudonym(KEY, p) == p  # an erased entry keeps its id
    assert pseudonym("other key", "48600123456") != p
    with pytest.raises(PseudonymKeyMissing, match="SMSFLOWS_PSEUDONYM_KEY"):
        pseudonym(None, "48600123456")


# -- draws over a real database ---------------------------------------------------------------


@pytest.fixture
async def contest(database_url: str, tmp_path: Path) -> Service:
    flows = write_flows(tmp_path / "flows", final=VOTE, stop=STOP, prize=PRIZE)
    async with running(make_settings(database_url, flows_dir=str(flows), pseudonym_key=KEY)) as svc:
        for n, phone in enumerate(PHONES):
            for _ in range(3 if n % 3 == 0 else 1):  # every third phone votes three times
                await send_mo(svc, sender=phone, text="GLOS A", time=str(IN_WINDOW + n))
        await send_mo(svc, sender=STOPPED, text="STOP", time=str(IN_WINDOW + 100))
        yield svc


def _final(svc: Service):  # type: ignore[no-untyped-def]
    return find_flow(Path(svc.settings.flows_dir), "final")


async def test_excluded_and_opted_out_numbers_never_win(contest: Service) -> None:
    request = DrawRequest(winners=len(PHONES), exclude=[f"+48 {STAFF[2:5]} {STAFF[5:8]} {STAFF[8:]}"])
    record = await run_draw(contest.engine, _final(contest), request, "tester", KEY)
    everyone = {p.id for p in record.winners}
    assert pseudonym(KEY, STAFF) not in everyone and pseudonym(KEY, STOPPED) not in everyone
    assert record.entries_count == len(PHONES) - 2 == len(record.winners)
    assert record.rule.excluded_numbers == 1 and record.rule.excluded_sha256 is not None
    assert verify(record).ok
    text = encode(record).decode()
    assert not any(phone in text for phone in PHONES), "the record masks every number"
    stored = await contest.rows("SELECT phone FROM draw_picks ORDER BY position")
    assert {r[0] for r in stored} == set(PHONES) - {STAFF, STOPPED}


async def test_one_chance_per_phone_or_per_entry(contest: Service) -> None:
    per_phone = await run_draw(contest.engine, _final(contest), DrawRequest(winners=3), "t", KEY)
    assert per_phone.entries_count == len(PHONES) - 1  # the STOP phone is out
    assert len({e.id for e in per_phone.entries}) == per_phone.entries_count
    votes = await contest.scalar("SELECT count(*) FROM votes WHERE sender <> :s", s=STOPPED)
    again = DrawRequest(winners=3, per="entry", new_round=True, reason="per entry, as the rules say")
    per_entry = await run_draw(contest.engine, _final(contest), again, "t", KEY)
    assert per_entry.entries_count == votes > per_phone.entries_count
    assert all(re.fullmatch(r"V\d+", e.id) for e in per_entry.entries)
    assert per_entry.round == 2


async def test_time_range_limits_the_entries(contest: Service) -> None:
    since = datetime.fromtimestamp(IN_WINDOW + 6, UTC)
    record = await run_draw(contest.engine, _final(contest), DrawRequest(winners=1, since=since), "t", KEY)
    assert record.entries_count == len(PHONES) - 6  # phones 0..5 voted before `since`
    assert record.rule.since == since


async def test_a_round_is_never_repeated_silently(contest: Service) -> None:
    flow = _final(contest)
    first = await run_draw(contest.engine, flow, DrawRequest(winners=2, seed="public lottery 1"), "anna", KEY)
    with pytest.raises(DrawAlreadyMade, match="--new-round"):
        await run_draw(contest.engine, flow, DrawRequest(winners=2), "bartek", KEY)
    with pytest.raises(DrawError, match="reason"):
        await run_draw(contest.engine, flow, DrawRequest(winners=2, new_round=True), "bartek", KEY)
    second = await run_draw(
        contest.engine, flow, DrawRequest(winners=2, new_round=True, reason="winner was staff"), "bartek", KEY
    )
    async with contest.engine.connect() as conn:
        rounds = await conn.run_sync(list_rounds, "final")
    assert [(r.round, r.drawn_by, r.reason, r.status) for r in rounds] == [
        (1, "anna", None, "drawn"),
        (2, "bartek", "winner was staff", "drawn"),
    ]
    assert rounds[0].seed == "public lottery 1" and rounds[0].seed_sha256 == first.seed_sha256
    logged = await contest.rows(
        "SELECT actor, target, detail FROM audit_log WHERE action = 'draws.run' ORDER BY id"
    )
    assert [(r[0], r[1]) for r in logged] == [("anna", "final round 1"), ("bartek", "final round 2")]
    assert json.loads(logged[1][2])["reason"] == "winner was staff"
    assert second.seed_source == "generated" and rounds[1].seed_sha256 == seed_sha256(second.seed)


async def test_two_simultaneous_draws_of_one_round_make_one(contest: Service) -> None:
    flow = _final(contest)
    engines = [create_engine(contest.settings) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(run_draw(e, flow, DrawRequest(winners=2), f"op{n}", KEY) for n, e in enumerate(engines)),
            return_exceptions=True,
        )
    finally:
        for e in engines:
            await e.dispose()
    made = [r for r in results if isinstance(r, DrawRecord)]
    refused = [r for r in results if isinstance(r, DrawAlreadyMade)]
    assert len(made) == 1 and len(refused) == 1, results
    assert await contest.scalar("SELECT count(*) FROM draws") == 1
    assert await contest.scalar("SELECT count(*) FROM draw_picks") == 2


async def test_flows_without_entries_cannot_be_drawn(contest: Service) -> None:
    stop = find_flow(Path(contest.settings.flows_dir), "stop")
    with pytest.raises(DrawError, match="optout flow"):
        await run_draw(contest.engine, stop, DrawRequest(winners=1), "t", KEY)
    late = DrawRequest(winners=1, since=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(DrawError, match="no accepted votes"):
        await run_draw(contest.engine, _final(contest), late, "t", KEY)


# -- the commands and the API -------------------------------------------------------------------


async def test_cli_runs_verifies_and_lists_draws(contest: Service, tmp_path: Path) -> None:
    env = {"database_url": contest.settings.database_url, "flows_dir": contest.settings.flows_dir}
    env["pseudonym_key"] = KEY
    staff = tmp_path / "staff.txt"
    staff.write_text(f"# staff\n{STAFF}\n", encoding="utf-8")
    out = tmp_path / "draw.json"
    run = await arun_cli(
        "draw", "run", "final", "--winners", "2", "--reserves", "1", "--exclude", str(staff),
        "--seed", "Lotto 4 9 17", "--output", str(out), "--by", "komisja", cwd=tmp_path, **env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["drawn_by"] == "komisja" and len(record["winners"]) == 2 and len(record["reserves"]) == 1
    assert record["winners"][0]["id"] in run.stdout
    ok = await arun_cli("draw", "verify", str(out), cwd=tmp_path)
    assert ok.returncode == 0 and "the record verifies" in ok.stdout

    record["entries"] = record["entries"][1:]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(record), encoding="utf-8")
    bad = await arun_cli("draw", "verify", str(forged), cwd=tmp_path)
    assert bad.returncode == 1 and "the list was changed" in bad.stdout

    again = await arun_cli("draw", "run", "final", "--winners", "2", cwd=tmp_path, **env)
    assert again.returncode == 1 and "--new-round" in again.stderr and "Traceback" not in again.stderr
    listed = await arun_cli("draw", "list", "final", "--json", cwd=tmp_path, **env)
    assert [r["drawn_by"] for r in json.loads(listed.stdout)] == ["komisja"]
    junk = tmp_path / "junk.json"
    junk.write_text("not json", encoding="utf-8")
    unreadable = await arun_cli("draw", "verify", str(junk), cwd=tmp_path)
    assert unreadable.returncode == 1 and "not JSON" in unreadable.stderr


async def test_api_draws_and_reads_rounds(contest: Service) -> None:
    api = contest.api
    made = await api.post("/api/flows/final/draws", json={"winners": 2, "reserves": 1, "seed": "s"})
    assert made.status_code == 201, made.text
    assert made.json()["drawn_by"] == "api" and verify(msgspec.convert(made.json(), DrawRecord)).ok
    again = await api.post("/api/flows/final/draws", json={"winners": 2})
    assert again.status_code == 409 and "--new-round" in again.text
    listed = (await api.get("/api/flows/final/draws")).json()
    assert [r["round"] for r in listed] == [1]
    record = await api.get("/api/flows/final/draws/1")
    assert record.json() == made.json()
    assert (await api.get("/api/flows/final/draws/7")).status_code == 404
    assert (await api.post("/api/flows/nope/draws", json={"winners": 1})).status_code == 404
    bad = await api.post("/api/flows/final/draws", json={"winners": 0})
    assert bad.status_code == 400 and "winners" in bad.text
    picks = (await api.get("/api/flows/final/draws/1/picks")).json()
    assert {p["phone"] for p in picks} <= set(PHONES) and len(picks) == 3


async def test_winners_are_told_once_and_their_answer_is_correlated(contest: Service) -> None:
    await run_draw(contest.engine, _final(contest), DrawRequest(winners=2, reserves=1), "t", KEY)
    body = {"text": "Wygrałeś! Odpisz TAK.", "flow": "prize"}
    told = (await contest.api.post("/api/flows/final/draws/1/notify", json=body)).json()
    assert [t["role"] for t in told] == ["winner", "winner"] and all(t["created"] for t in told)
    again = (await contest.api.post("/api/flows/final/draws/1/notify", json=body)).json()
    assert [t["outbox_id"] for t in again] == [t["outbox_id"] for t in told] and not any(
        t["created"] for t in again
    )
    told_log = await contest.rows("SELECT actor, detail FROM audit_log WHERE action = 'draws.notify'")
    assert len(told_log) == 1 and told_log[0][0] == "api", "telling them again logs nothing new"
    rows = await contest.rows("SELECT to_number, tag, ext_id FROM outbox WHERE tag = 'prize' ORDER BY id")
    assert len(rows) == 2
    winner, _tag, ext_id = rows[0]
    await send_mo(contest, sender=winner, text="TAK", ext_id=ext_id, time=str(IN_WINDOW + 500))
    answer = await contest.scalar("SELECT answer FROM outbox WHERE ext_id = :e", e=ext_id)
    assert answer == "accepted"
