"""``smsflows audit``, export manifests and "did my vote count?", over the real service."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows
from tests.test_flows_cli import arun_cli
from tests.test_replay import vote

SUBSCRIPTION = """
id = "nowosci"
kind = "subscription"
keywords = ["NOWOSCI"]

[subscription]
leave_keywords = ["WYPISZ"]

[replies]
joined = "Zapisano."
left = "Wypisano."
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
SAMPLE = "48600123456"  # the phone the broken flow's reply renders for


async def _cli(svc: Service, *args: str) -> tuple[int, str]:
    s = svc.settings
    result = await arun_cli(
        *args, cwd=Path(s.flows_dir).parent, database_url=s.database_url, flows_dir=s.flows_dir
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


async def _audit(svc: Service) -> tuple[int, dict[str, object], str]:
    code, out = await _cli(svc, "audit", "final", "--json")
    report = json.loads(out[: out.rindex("}") + 1])
    _, shown = await _cli(svc, "audit", "final")
    return code, report, shown


async def test_audit_matches_after_a_mixed_load_and_reports_a_row_removed_by_hand(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS"))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, sender=SAMPLE, text="GLOS A")  # counted by the broken version
        for n in (1, 2, 3):
            await send_mo(svc, sender=f"4860000000{n}", text="GLOS B")  # these fail
        write_flows(flows, final=vote("final", "GLOS", broken=False))
        assert (await svc.api.post("/api/flows/reload")).status_code == 200
        code, out = await _cli(svc, "replay", "--status", "failed")
        assert code == 0, out
        await send_mo(svc, sender="48600000001", text="GLOS A")  # a repeat
        await send_mo(svc, sender="48600000004", text="GLOS X")  # not an option
        form = mo_form(sender="48600000005", text="GLOS A")
        async with httpx.AsyncClient() as client:
            for _ in range(3):  # one message, delivered three times
                assert (await client.post(svc.mo_url, data=form)).status_code == 200

        code, report, shown = await _audit(svc)
        assert code == 0, shown
        assert report["rebuilt"] == report["live"] == {"A": 2, "B": 3}
        versions = {v["hash"]: v for v in report["versions"]}  # type: ignore[attr-defined]
        assert len(versions) == 2 and sorted(v["entries"] for v in versions.values()) == [1, 4]
        current = next(v for v in versions.values() if v["current"])
        assert current["outcomes"] == {"accepted": 4, "invalid": 1, "repeat": 1}
        assert "the live tables match the event log" in shown

        removed = await svc.scalar("SELECT inbound_id FROM votes WHERE sender = '48600000002'")
        async with svc.engine.begin() as conn:
            await conn.execute(text("DELETE FROM votes WHERE sender = '48600000002'"))
        code, report, shown = await _audit(svc)
        assert code == 1
        assert report["live"] == {"A": 2, "B": 2} and report["differences"] == 1
        assert f"missing from the live table: vote of message {removed} (48600***002, B)" in shown
        assert "48600000002" not in shown, "the report masks numbers"


async def test_audit_rebuilds_a_list_with_leaves_and_stop(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", nowosci=SUBSCRIPTION, stop=STOP)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for n in range(1, 5):
            await send_mo(svc, sender=f"4860000000{n}", text="NOWOSCI")
        await send_mo(svc, sender="48600000002", text="WYPISZ")
        await send_mo(svc, sender="48600000003", text="STOP")
        code, out = await _cli(svc, "audit", "nowosci", "--json")
        assert code == 0, out
        assert json.loads(out)["live"] == {"active": 2, "left": 2}
        async with svc.engine.begin() as conn:
            await conn.execute(text("UPDATE subscriptions SET status = 'active' WHERE phone = '48600000003'"))
        code, out = await _cli(svc, "audit", "nowosci")
        assert code == 1 and "48600***003" in out and "differs" in out
        code, out = await _cli(svc, "audit", "stop")
        assert code == 1 and "keeps no results" in out


async def test_export_manifest_shows_a_file_unchanged_or_changed(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for n in range(1, 4):
            await send_mo(svc, sender=f"4860000000{n}", text="GLOS A")
        out = tmp_path / "final.csv"
        code, shown = await _cli(svc, "export", "final", "--csv", str(out))
        assert code == 0, shown
        manifest = json.loads((tmp_path / "final.csv.manifest.json").read_text(encoding="utf-8"))
        assert manifest["rows"] == 3 and manifest["flow"] == "final" and manifest["sha256"] in shown
        code, shown = await _cli(svc, "check-export", str(out))
        assert code == 0 and "is unchanged: 3 row(s)" in shown
        out.write_text(
            out.read_text(encoding="utf-8").replace("48600000002", "48600000009"), encoding="utf-8"
        )
        code, shown = await _cli(svc, "check-export", str(out))
        assert code == 1 and "was changed after it was exported" in shown


async def test_a_participant_sees_every_message_its_decision_and_why(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, sender="48600000001", text="GLOS X")
        await send_mo(svc, sender="48600000001", text="GLOS A")
        await send_mo(svc, sender="48600000001", text="GLOS B")
        await send_mo(svc, sender="48600000002", text="GLOS B")
        found = (await svc.api.get("/api/contacts/+48 600 000 001/flows/final")).json()
        assert found["counted"] == 1 and found["phone"] == "48600000001"
        assert [m["text"] for m in found["messages"]] == ["GLOS X", "GLOS A", "GLOS B"]
        meanings = [m["decisions"][0]["meaning"] for m in found["messages"]]
        assert meanings[0].startswith("not counted: not a valid option")
        assert meanings[1] == "counted"
        assert meanings[2].startswith("not counted: this phone had used all its votes")
        assert found["messages"][1]["decisions"][0]["reply"] == "Masz głos na A."
        assert (await svc.api.get("/api/contacts/48600000001/flows/nope")).status_code == 404
        code, shown = await _cli(svc, "contacts", "show", "600000001", "--flow", "final")
        assert code == 0 and "1 entry(ies) counted" in shown and "'GLOS B'" in shown


async def test_api_audit_reports_the_same_as_the_command(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False), stop=STOP)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await send_mo(svc, sender="48600000001", text="GLOS A")
        report = (await svc.api.get("/api/flows/final/audit")).json()
        assert report["differences"] == 0 and report["live"] == {"A": 1}
        async with svc.engine.begin() as conn:
            await conn.execute(text("UPDATE votes SET option = 'B'"))
        report = (await svc.api.get("/api/flows/final/audit")).json()
        assert report["differences"] == 1 and report["listed"][0].startswith("differs:")
        assert (await svc.api.get("/api/flows/stop/audit")).status_code == 422
