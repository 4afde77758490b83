"""``/api/flows`` (list, reload, results) and ``/api/outbox`` against the real service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import Service, make_settings, running, send_mo, write_flows

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
labels = { A = "Anna", B = "Bartek" }

[replies]
accepted = "Głos na {{ label }} przyjęty."
invalid = "Wyslij GLOS A lub GLOS B."
"""
INFO = """
id = "info"
kind = "autoreply"
keywords = ["INFO"]

[replies]
reply = "Info v1"
"""
IN_WINDOW = "1764619200"  # 2025-12-01 21:00 Warsaw


@pytest.fixture
async def svc(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", final=VOTE, info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as service:
        yield service


async def _replies(service: Service, sender: str) -> list[str]:
    rows = await service.rows("SELECT text FROM outbox WHERE to_number = :s ORDER BY id", s=sender)
    return [r[0] for r in rows]


async def test_flows_are_listed_with_their_window_version_and_state(svc: Service) -> None:
    resp = await svc.api.get("/api/flows")
    assert resp.status_code == 200
    body = resp.json()
    assert body["last_error"] is None and body["directory"] == svc.settings.flows_dir
    assert datetime.fromisoformat(body["loaded_at"]).tzinfo is not None
    flows = {f["id"]: f for f in body["flows"]}
    final = flows["final"]
    assert (final["kind"], final["name"], final["numbers"], final["keywords"]) == (
        "vote",
        "Finał",
        ["70120"],
        ["GLOS"],
    )
    assert datetime.fromisoformat(final["starts"]) == datetime.fromisoformat("2025-12-01T19:00:00+00:00")
    assert final["window"] == "2025-12-01 20:00 – 2025-12-01 22:00"
    assert (final["enabled"], final["open_now"], final["status"]) == (True, False, "closed")
    assert len(final["hash"]) == 12 and final["file"].endswith("final.toml")
    info = flows["info"]
    assert (info["numbers"], info["starts"], info["open_now"], info["status"]) == (
        ["*"],
        None,
        True,
        "enabled",
    )


async def test_flows_api_needs_the_token(svc: Service) -> None:
    for path in ["/api/flows", "/api/outbox", "/api/flows/final/results"]:
        assert (await svc.api.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
    assert (await svc.api.post("/api/flows/reload", headers={"Authorization": ""})).status_code == 401


async def test_reload_of_good_files_swaps_the_flows(svc: Service) -> None:
    folder = Path(svc.settings.flows_dir)
    write_flows(folder, info=INFO.replace("Info v1", "Info v2"))
    write_flows(
        folder, news=INFO.replace('"info"', '"news"').replace('"INFO"', '"NEWS"').replace("Info v1", "News")
    )
    resp = await svc.api.post("/api/flows/reload")
    assert resp.status_code == 200, resp.text
    assert resp.json()["flows"] == ["final", "info", "news"]
    await send_mo(svc, text="INFO", sender="48600000011")
    await send_mo(svc, text="NEWS", sender="48600000012")
    assert await _replies(svc, "48600000011") == ["Info v2"]
    assert await _replies(svc, "48600000012") == ["News"]


async def test_reload_of_broken_files_answers_422_and_the_old_flows_keep_working(svc: Service) -> None:
    folder = Path(svc.settings.flows_dir)
    before = (await svc.api.get("/api/flows")).json()
    write_flows(
        folder, info=INFO.replace("Info v1", "Info v2").replace("[replies]", "[replies]\nrepyl = 'x'")
    )
    write_flows(folder, clash=VOTE.replace('id = "final"', 'id = "clash"'))
    resp = await svc.api.post("/api/flows/reload")
    assert resp.status_code == 422
    body = resp.json()
    assert "running flows stay" in body["detail"]
    errors = body["extra"]["errors"]
    assert any(
        e.endswith(
            "info.toml: replies.repyl: unknown field; check its spelling against the fields in docs/flows.md"
        )
        for e in errors
    ), errors
    await send_mo(svc, text="INFO", sender="48600000013")
    await send_mo(svc, text="GLOS A", time=IN_WINDOW, sender="48600000014")
    assert await _replies(svc, "48600000013") == ["Info v1"]
    assert await _replies(svc, "48600000014") == ["Głos na Anna przyjęty."]
    after = (await svc.api.get("/api/flows")).json()
    assert after["flows"] == before["flows"] and after["loaded_at"] == before["loaded_at"]
    assert "replies.repyl: unknown field" in after["last_error"]


async def test_reload_reports_a_clash_between_files(svc: Service) -> None:
    write_flows(Path(svc.settings.flows_dir), clash=VOTE.replace('id = "final"', 'id = "clash"'))
    resp = await svc.api.post("/api/flows/reload")
    assert resp.status_code == 422
    (error,) = resp.json()["extra"]["errors"]
    assert "final.toml: keywords: GLOS on number 70120 is already claimed by" in error
    assert "clash.toml at overlapping times" in error


async def test_results_count_votes_and_outcomes(svc: Service) -> None:
    for sender, text in [("48600000021", "GLOS A"), ("48600000022", "GLOS B"), ("48600000023", "GLOS A")]:
        await send_mo(svc, text=text, sender=sender, time=IN_WINDOW)
    await send_mo(svc, text="GLOS X", sender="48600000024", time=IN_WINDOW)
    await send_mo(svc, text="GLOS A", sender="48600000021", time=IN_WINDOW)  # repeat: no reply set
    resp = await svc.api.get("/api/flows/final/results")
    assert resp.status_code == 200
    body = resp.json()
    assert (body["flow"], body["kind"], body["name"]) == ("final", "vote", "Finał")
    assert body["results"]["tally"] == [
        {"option": "A", "label": "Anna", "votes": 2},
        {"option": "B", "label": "Bartek", "votes": 1},
    ]
    assert (body["results"]["total"], body["results"]["voters"]) == (3, 3)
    assert body["outcomes"] == {"accepted": 3, "invalid": 1, "repeat": 1} and body["events"] == 5


async def test_results_of_an_unknown_flow_is_404(svc: Service) -> None:
    resp = await svc.api.get("/api/flows/nope/results")
    assert resp.status_code == 404
    assert "GET /api/flows" in resp.json()["detail"]


async def test_outbox_lists_queued_replies_newest_first_with_filters_and_pages(svc: Service) -> None:
    await send_mo(svc, text="GLOS A", sender="48600000031", time=IN_WINDOW)
    await send_mo(svc, text="INFO", sender="48600000032")
    await send_mo(svc, text="INFO", sender="48600000031")
    resp = await svc.api.get("/api/outbox")
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [(i["to_number"], i["flow_id"]) for i in items] == [
        ("48600000031", "info"),
        ("48600000032", "info"),
        ("48600000031", "final"),
    ]
    first = items[-1]
    assert (first["text"], first["status"], first["sent"]) == ("Głos na Anna przyjęty.", "queued", False)
    assert (first["encoding"], first["parts"], first["from_number"]) == ("ucs2", 1, "70120")
    assert len(first["ext_id"]) == 32 and first["inbound_id"] is not None

    by_phone = (await svc.api.get("/api/outbox", params={"to": "+48 600 000 031"})).json()["items"]
    assert [i["flow_id"] for i in by_phone] == ["info", "final"]
    by_flow = (await svc.api.get("/api/outbox", params={"flow": "final", "status": "queued"})).json()
    assert [i["to_number"] for i in by_flow["items"]] == ["48600000031"]
    assert (await svc.api.get("/api/outbox", params={"status": "sent"})).json()["items"] == []

    page1 = (await svc.api.get("/api/outbox", params={"limit": 2})).json()
    page2 = (await svc.api.get("/api/outbox", params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    assert [i["id"] for i in page1["items"] + page2["items"]] == [i["id"] for i in items]
    assert page2["next_cursor"] is None


async def test_outbox_refuses_an_unknown_status(svc: Service) -> None:
    resp = await svc.api.get("/api/outbox", params={"status": "lost"})
    assert resp.status_code == 400
    assert "queued, sending, sent, failed, dry-run" in resp.json()["detail"]
