"""The dashboard's live counters against a full recount, in the running service: the API answer and
``smsflows counters check``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from app.cli import main
from app.dashboard.live import TallyHub, chart_start
from app.db.models import utcnow
from tests.conftest import API_TOKEN, Service, free_port, make_settings, running, send_mo, write_flows
from tests.test_dashboard_pages import VOTE


@pytest.fixture
async def voting(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        yield svc


def _hub(service: Service) -> TallyHub:
    assert service.app is not None
    hub: TallyHub = service.app.state.tally_hub
    return hub


async def _vote(service: Service, options: str, first: int) -> None:
    for i, option in enumerate(options):
        await send_mo(service, text=f"GLOS {option}", sender=f"4860010{first + i:04d}")


async def _count_everything(service: Service) -> None:
    """What the dashboard's pages count: the tally, the event log, today's totals, the chart."""
    hub = _hub(service)
    assert service.app is not None
    flow = service.app.state.flows.current.flows["final"]
    await hub.snapshot(flow)
    await hub.flow_log("final")
    await hub.today(utcnow())
    for counter in hub.traffic():
        await counter.minutes(hub.engine, chart_start(utcnow()))


async def _command(*args: str, token: str = API_TOKEN, **env: str) -> Result:
    env = {"SMSFLOWS_API_TOKEN": token, "COLUMNS": "200", **env}
    return await asyncio.to_thread(CliRunner().invoke, main, ["counters", "check", *args], env=env)


async def test_live_counters_agree_with_a_full_recount_after_votes(voting: Service) -> None:
    await _vote(voting, "AAB", 0)
    await _count_everything(voting)
    await _vote(voting, "BB", 10)
    await _count_everything(voting)  # the counters add only the new rows
    await _vote(voting, "A", 20)  # after the counters' last look: beyond what they compare
    resp = await voting.api.get("/api/counters/check")
    assert resp.status_code == 200, resp.text
    report = resp.json()
    checks = {c["counter"]: c for c in report["counters"]}
    assert report["agree"] is True
    names = {"votes final", "events final", "today inbound", "today outbound", "minutes inbound"}
    assert names <= set(checks)
    assert all(c["agree"] for c in checks.values())
    assert checks["votes final"]["live"] == checks["votes final"]["recounted"] == {"A": 2, "B": 3}
    assert checks["today inbound"]["live"] == {"rows": 5}
    assert checks["events final"]["live"] == checks["events final"]["recounted"]
    assert sum(checks["events final"]["live"].values()) == 5
    assert await voting.scalar("SELECT count(*) FROM votes") == 6  # the sixth is not compared
    outcome = await _command("--url", voting.base_url)
    assert outcome.exit_code == 0, outcome.output
    assert "votes final" in outcome.output and "today inbound" in outcome.output
    assert "counters agree with the tables" in outcome.output


async def test_a_corrupted_live_counter_is_reported_and_the_command_exits_1(voting: Service) -> None:
    await _vote(voting, "AAB", 0)
    await _count_everything(voting)
    hub = _hub(voting)
    (tally,) = hub.counters.values()
    async with tally.lock:
        tally.settled["A"] = tally.settled.get("A", 0) + 5  # a count gone wrong in memory
    resp = await voting.api.get("/api/counters/check")
    report = resp.json()
    checks = {c["counter"]: c for c in report["counters"]}
    assert report["agree"] is False
    assert checks["votes final"]["agree"] is False
    assert checks["votes final"]["live"] == {"A": 7, "B": 1}
    assert checks["votes final"]["recounted"] == {"A": 2, "B": 1}
    assert [name for name, c in checks.items() if not c["agree"]] == ["votes final"]
    outcome = await _command("--url", voting.base_url)
    assert outcome.exit_code == 1
    assert "votes final: A: live 7, recounted 2" in outcome.stderr
    assert "1 of" in outcome.stderr and "counters disagree" in outcome.stderr


async def test_the_command_says_when_no_service_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    outcome = await _command("--url", url)
    assert outcome.exit_code == 1
    assert f"no service answered at {url}" in outcome.stderr and "smsflows serve" in outcome.stderr
    assert "Traceback" not in outcome.output


async def test_the_command_and_the_api_refuse_a_wrong_token(service: Service) -> None:
    no_token = await service.api.get("/api/counters/check", headers={"Authorization": ""})
    assert no_token.status_code == 401
    outcome = await _command("--url", service.base_url, token="not-the-token")
    assert outcome.exit_code == 1
    assert "refused the token" in outcome.stderr and "SMSFLOWS_API_TOKEN" in outcome.stderr
    assert "Traceback" not in outcome.output


async def test_a_service_that_counted_nothing_yet_says_so(service: Service) -> None:
    resp = await service.api.get("/api/counters/check")
    assert resp.json()["counters"] == [] and resp.json()["agree"] is True
    outcome = await _command("--url", service.base_url)
    assert outcome.exit_code == 0 and "holds no counters yet" in outcome.output


async def test_the_command_finds_the_service_at_its_port_without_url(service: Service) -> None:
    port = service.base_url.rsplit(":", 1)[1]
    outcome = await _command(SMSFLOWS_PORT=port, SMSFLOWS_HOST="0.0.0.0")
    assert outcome.exit_code == 0, outcome.output
    assert "holds no counters yet" in outcome.output
