"""``smsflows replay``: a message a flow failed on is kept, and counts once after the fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from app.db.outage import DEADLOCK_TRIES
from app.flows import replay as replay_module
from app.flows.loader import load_dir
from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows
from tests.test_flows_cli import arun_cli

# The reply renders for the sample phone `flows check` uses (so the file loads) and divides by zero
# for any other phone: the accepted reply of a real vote cannot render, and the message fails.
BROKEN = """
id = "ID"
kind = "vote"
numbers = ["70120"]
keywords = ["KEYWORD"]

[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }

[replies]
accepted = "Masz głos na {{ option }} ({{ 1 // ((sender == '48600123456') | int) }})."
"""
FIXED = BROKEN.replace(" ({{ 1 // ((sender == '48600123456') | int) }})", "")
HELLO = """
id = "hello"
kind = "autoreply"
keywords = ["HELLO"]

[replies]
reply = "Hello!"
"""


def vote(flow_id: str = "final", keyword: str = "GLOS", *, broken: bool = True) -> str:
    return (BROKEN if broken else FIXED).replace('"ID"', f'"{flow_id}"').replace("KEYWORD", keyword)


@pytest.fixture
async def broken(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", final=vote(), poll=vote("poll", "ANKIETA"))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        yield svc


async def replay(svc: Service, *args: str) -> tuple[int, str]:
    settings = svc.settings
    flows_dir = settings.flows_dir
    result = await arun_cli(
        "replay", *args, cwd=Path(flows_dir).parent, database_url=settings.database_url, flows_dir=flows_dir
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


async def _status(svc: Service, sms_id: str) -> tuple[str, str | None, str | None]:
    rows = await svc.rows("SELECT status, flow_id, error FROM inbound_messages WHERE sms_id = :s", s=sms_id)
    return tuple(rows[0])  # type: ignore[return-value]


async def test_failed_message_is_replayed_after_the_fix_and_its_vote_counts_once(broken: Service) -> None:
    form = await send_mo(broken, text="GLOS A", sender="48600000001")
    status, _, error = await _status(broken, form["sms_id"])
    assert status == "failed"
    assert error is not None and "final.toml: replies.accepted: cannot render: ZeroDivisionError" in error
    assert await broken.scalar("SELECT count(*) FROM votes") == 0  # the flow's work was rolled back
    assert await broken.scalar("SELECT count(*) FROM outbox") == 0

    write_flows(Path(broken.settings.flows_dir), final=vote(broken=False))
    code, out = await replay(broken, "--status", "failed", "--flow", "final")
    assert code == 0, out
    assert "Replayed 1 failed message(s) for flow final." in out
    assert any("processed" in line and "1" in line for line in out.splitlines())
    assert await _status(broken, form["sms_id"]) == ("processed", "final", None)
    assert await broken.scalar("SELECT count(*) FROM votes WHERE option = 'A'") == 1
    replies = await broken.rows("SELECT text FROM outbox WHERE to_number = '48600000001'")
    assert [r[0] for r in replies] == ["Masz głos na A."]

    code, out = await replay(broken, "--status", "failed")  # nothing left: nothing counts twice
    assert code == 0 and "No failed messages to replay." in out
    await send_mo(broken, **form)  # Mobitex delivers it once more
    assert await broken.scalar("SELECT count(*) FROM votes") == 1
    assert await broken.scalar("SELECT count(*) FROM outbox") == 1
    assert await broken.scalar("SELECT messages FROM contacts WHERE phone = '48600000001'") == 1


async def test_replay_of_a_still_broken_flow_keeps_the_message_failed_and_exits_1(broken: Service) -> None:
    form = await send_mo(broken, text="GLOS B", sender="48600000002")
    code, out = await replay(broken)
    assert code == 1
    assert "still failing" in out and form["sms_id"] in out and "ZeroDivisionError" in out
    assert (await _status(broken, form["sms_id"]))[0] == "failed"
    assert await broken.scalar("SELECT count(*) FROM votes") == 0


async def test_dry_run_shows_the_outcome_and_saves_nothing(broken: Service) -> None:
    form = await send_mo(broken, text="GLOS A", sender="48600000003")
    write_flows(Path(broken.settings.flows_dir), final=vote(broken=False))
    code, out = await replay(broken, "--dry-run")
    assert code == 0, out
    assert "Would replay 1 failed message(s)." in out and "Dry run: nothing was saved." in out
    assert any("processed" in line for line in out.splitlines())
    assert (await _status(broken, form["sms_id"]))[0] == "failed"
    assert await broken.scalar("SELECT count(*) FROM votes") == 0
    assert await broken.scalar("SELECT count(*) FROM outbox") == 0


async def test_replay_of_one_flow_leaves_other_flows_messages_as_they_were(broken: Service) -> None:
    mine = await send_mo(broken, text="GLOS A", sender="48600000004")
    other = await send_mo(broken, text="ANKIETA B", sender="48600000005")
    write_flows(
        Path(broken.settings.flows_dir), final=vote(broken=False), poll=vote("poll", "ANKIETA", broken=False)
    )
    code, out = await replay(broken, "--flow", "final")
    assert code == 0, out
    assert "skipped (another flow's message)" in out
    assert (await _status(broken, mine["sms_id"]))[0] == "processed"
    other_status = await _status(broken, other["sms_id"])
    assert other_status[0] == "failed" and "ZeroDivisionError" in (other_status[2] or "")

    code, out = await replay(broken)
    assert code == 0, out
    assert (await _status(broken, other["sms_id"]))[:2] == ("processed", "poll")
    assert dict(await broken.rows("SELECT flow_id, count(*) FROM votes GROUP BY flow_id")) == {
        "final": 1,
        "poll": 1,
    }


async def test_ignored_messages_meet_a_flow_added_later(broken: Service) -> None:
    form = await send_mo(broken, text="hello there", sender="48600000006")
    assert (await _status(broken, form["sms_id"]))[0] == "ignored"
    write_flows(Path(broken.settings.flows_dir), hello=HELLO)
    code, out = await replay(broken, "--status", "ignored")
    assert code == 0, out
    assert await _status(broken, form["sms_id"]) == ("processed", "hello", None)
    assert await broken.scalar("SELECT text FROM outbox WHERE to_number = '48600000006'") == "Hello!"


async def test_replay_refuses_processed_messages_and_unknown_flows(broken: Service) -> None:
    code, out = await replay(broken, "--status", "processed")
    assert code == 2 and "'processed' is not one of" in out
    code, out = await replay(broken, "--flow", "nope")
    assert code == 2 and "no flow 'nope'" in out and "final, poll" in out


async def test_replay_with_broken_flow_files_changes_nothing(broken: Service) -> None:
    form = await send_mo(broken, text="GLOS A", sender="48600000007")
    write_flows(
        Path(broken.settings.flows_dir), final=vote(broken=False).replace("[vote]", "[vote]\nper_voter = 1")
    )
    code, out = await replay(broken)
    assert code == 1
    assert "final.toml: vote.per_voter: unknown field" in out
    assert (await _status(broken, form["sms_id"]))[0] == "failed"


async def test_replays_alongside_live_votes_count_every_vote_once(broken: Service) -> None:
    def votes(prefix: str) -> list[dict[str, str]]:
        return [mo_form(text="GLOS " + "AB"[i % 2], sender=f"{prefix}{i:04d}") for i in range(60)]

    async def deliver(forms: list[dict[str, str]]) -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20), timeout=60) as client:
            answers = await asyncio.gather(*(client.post(broken.mo_url, data=f) for f in forms))
        assert all(r.status_code == 200 for r in answers)

    await deliver(votes("4860020"))
    assert await broken.scalar("SELECT count(*) FROM inbound_messages WHERE status = 'failed'") == 60
    write_flows(Path(broken.settings.flows_dir), final=vote(broken=False))
    assert (await broken.api.post("/api/flows/reload")).status_code == 200

    first, second, _ = await asyncio.gather(replay(broken), replay(broken), deliver(votes("4860030")))
    assert (first[0], second[0]) == (0, 0), first[1] + second[1]
    assert dict(await broken.rows("SELECT status, count(*) FROM inbound_messages GROUP BY status")) == {
        "processed": 120
    }
    assert dict(await broken.rows("SELECT option, count(*) FROM votes GROUP BY option")) == {"A": 60, "B": 60}
    assert await broken.scalar("SELECT count(*) FROM outbox") == 120
    assert await broken.scalar("SELECT count(DISTINCT inbound_id) FROM outbox") == 120


class _Deadlock(Exception):
    sqlstate = "40P01"  # what asyncpg's DeadlockDetectedError carries


@pytest.mark.parametrize("deadlocks", [2, 3])
async def test_a_replay_batch_the_database_rolls_back_for_a_deadlock_runs_again(
    broken: Service, monkeypatch: pytest.MonkeyPatch, deadlocks: int
) -> None:
    """The webhook's writer and a replay can meet on a row: the database then rolls one back
    whole. The replay runs that batch again (three tries in all), then gives up with the error."""
    form = await send_mo(broken, text="GLOS A", sender="48600000031")
    write_flows(Path(broken.settings.flows_dir), final=vote(broken=False))
    calls = []

    def batch(*args: Any) -> Any:
        calls.append(1)
        if len(calls) <= deadlocks:
            raise DBAPIError("UPDATE inbound_messages …", None, _Deadlock("deadlock detected"))
        return real(*args)

    real = replay_module.replay_batch
    monkeypatch.setattr(replay_module, "replay_batch", batch)
    flows = load_dir(Path(broken.settings.flows_dir))
    if deadlocks >= DEADLOCK_TRIES:
        with pytest.raises(DBAPIError):
            await replay_module.replay(broken.engine, flows, ["failed"])
        assert len(calls) == DEADLOCK_TRIES
        assert (await _status(broken, form["sms_id"]))[0] == "failed"
        return
    summary = await replay_module.replay(broken.engine, flows, ["failed"])
    assert summary.outcomes == {"processed": 1}
    assert await _status(broken, form["sms_id"]) == ("processed", "final", None)
    assert await broken.scalar("SELECT count(*) FROM votes") == 1
