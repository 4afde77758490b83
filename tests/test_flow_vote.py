"""Votes through the real webhook: aliases, limits, repeats, windows, exact tallies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows

VOTE = """
id = "final"
kind = "vote"
numbers = ["70120"]
keywords = ["GLOS", "VOTE"]
starts = 2025-12-01T20:00:00+01:00
ends = 2025-12-01T22:00:00+01:00

[vote]
options = { A = ["ANNA", "1"], B = ["BARTEK", "2"] }
labels = { A = "Anna", B = "Bartek" }
per_sender = PER_SENDER
on_repeat = "ON_REPEAT"

[replies]
accepted = "Dziękujemy! Głos na {{ label }} przyjęty."
invalid = "Wyślij GLOS A lub GLOS B."
repeat = "Twój głos już mamy."
closed = "Głosowanie zakończone."
"""
IN_WINDOW = "1764619200"  # 2025-12-01 21:00 Warsaw
AFTER = "1764622920"  # 22:02 Warsaw


def vote_flow(per_sender: int = 1, on_repeat: str = "reject") -> str:
    return VOTE.replace("PER_SENDER", str(per_sender)).replace("ON_REPEAT", on_repeat)


@pytest.fixture
async def votes(database_url: str, tmp_path: Path) -> Service:
    flows = write_flows(tmp_path / "flows", final=vote_flow())
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        yield svc


async def _replies(service: Service, sender: str) -> list[str]:
    rows = await service.rows("SELECT text FROM outbox WHERE to_number = :s ORDER BY id", s=sender)
    return [r[0] for r in rows]


async def test_vote_is_counted_and_answered(votes: Service) -> None:
    form = await send_mo(votes, text="głos anna", time=IN_WINDOW, sender="48600000001")
    assert await votes.scalar("SELECT option FROM votes WHERE sender = '48600000001'") == "A"
    assert await _replies(votes, "48600000001") == ["Dziękujemy! Głos na Anna przyjęty."]
    status = await votes.rows(
        "SELECT status, flow_id FROM inbound_messages WHERE sms_id = :s", s=form["sms_id"]
    )
    assert tuple(status[0]) == ("processed", "final")
    event = await votes.rows("SELECT outcome, flow_hash, reply_id FROM flow_events WHERE flow_id = 'final'")
    assert event[0][0] == "accepted" and len(event[0][1]) == 12 and event[0][2] is not None


@pytest.mark.parametrize("text", ["GLOS A", "glos 1", "  Głos:  a! ", "VOTE bartek", "GŁOS, 2"])
async def test_keyword_and_alias_matching_ignores_case_diacritics_and_punctuation(
    votes: Service, text: str
) -> None:
    await send_mo(votes, text=text, time=IN_WINDOW)
    assert await votes.scalar("SELECT count(*) FROM votes") == 1


async def test_invalid_option_gets_the_invalid_reply_and_no_vote(votes: Service) -> None:
    await send_mo(votes, text="GLOS C", time=IN_WINDOW, sender="48600000002")
    assert await votes.scalar("SELECT count(*) FROM votes") == 0
    assert await _replies(votes, "48600000002") == ["Wyślij GLOS A lub GLOS B."]


async def test_second_vote_is_rejected_with_the_repeat_reply(votes: Service) -> None:
    await send_mo(votes, text="GLOS A", time=IN_WINDOW, sender="48600000003")
    await send_mo(votes, text="GLOS B", time=IN_WINDOW, sender="48600000003")
    assert [r[0] for r in await votes.rows("SELECT option FROM votes")] == ["A"]
    assert (await _replies(votes, "48600000003"))[-1] == "Twój głos już mamy."


async def test_window_is_judged_by_the_message_time_not_arrival(votes: Service) -> None:
    # Sent at 21:59, delivered now (long after 22:00) after retries: it still counts.
    await send_mo(votes, text="GLOS A", time="1764622740", sender="48600000004")
    await send_mo(votes, text="GLOS A", time=AFTER, sender="48600000005")
    assert [r[0] for r in await votes.rows("SELECT sender FROM votes")] == ["48600000004"]
    assert await _replies(votes, "48600000005") == ["Głosowanie zakończone."]


async def test_other_number_and_unknown_keyword_are_ignored(votes: Service) -> None:
    a = await send_mo(votes, text="GLOS A", time=IN_WINDOW, number="4112")
    b = await send_mo(votes, text="HELLO", time=IN_WINDOW)
    statuses = await votes.rows("SELECT sms_id, status FROM inbound_messages")
    assert dict(statuses) == {a["sms_id"]: "ignored", b["sms_id"]: "ignored"}
    assert await votes.scalar("SELECT count(*) FROM outbox") == 0


async def test_redelivered_vote_is_counted_once(votes: Service) -> None:
    form = mo_form(text="GLOS A", time=IN_WINDOW)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            assert (await client.post(votes.mo_url, data=form)).status_code == 200
    assert await votes.scalar("SELECT count(*) FROM votes") == 1
    assert await votes.scalar("SELECT count(*) FROM outbox") == 1


async def test_tally_is_exact_under_concurrent_and_duplicate_deliveries(votes: Service) -> None:
    forms = [
        mo_form(text="GLOS " + ("A" if i % 3 else "B"), time=IN_WINDOW, sender=f"4860010{i:04d}")
        for i in range(120)
    ]
    same_sender = [mo_form(text="GLOS B", time=IN_WINDOW, sender="48600999999") for _ in range(10)]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=60) as client:
        sends = [client.post(votes.mo_url, data=f) for f in forms + forms[:30] + same_sender]
        answers = await asyncio.gather(*sends)
    assert all(r.status_code == 200 for r in answers)
    tally = dict(await votes.rows("SELECT option, count(*) FROM votes GROUP BY option"))
    assert tally == {"A": 80, "B": 41}
    assert await votes.scalar("SELECT count(*) FROM votes WHERE sender = '48600999999'") == 1


@pytest.mark.parametrize(("per_sender", "on_repeat"), [(3, "reject"), (1, "replace")])
async def test_per_sender_limit_and_replace(
    database_url: str, tmp_path: Path, per_sender: int, on_repeat: str
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote_flow(per_sender, on_repeat))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for option in ["A", "B", "A", "B"]:
            await send_mo(svc, text=f"GLOS {option}", time=IN_WINDOW)
        options = [r[0] for r in await svc.rows("SELECT option FROM votes ORDER BY seq")]
    assert options == (["A", "B", "A"] if on_repeat == "reject" else ["B"])
