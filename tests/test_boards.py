"""Public results boards: a link works without login, shows no number, and stops when revoked."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import make_settings, running, send_mo, write_flows
from tests.test_audit import SUBSCRIPTION
from tests.test_flows_cli import arun_cli
from tests.test_replay import vote

PHONES = ["48600000001", "48600000002", "48600000003"]


def _no_number(body: str) -> None:
    for phone in PHONES:
        assert phone[-9:] not in body, f"{phone} shows on the board"


async def test_a_board_link_works_without_login_shows_no_number_and_stops_when_revoked(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False), nowosci=SUBSCRIPTION)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for n, phone in enumerate(PHONES):
            await send_mo(svc, sender=phone, text="GLOS A" if n else "GLOS B")
            await send_mo(svc, sender=phone, text="NOWOSCI")
        made = await svc.api.post("/api/flows/final/boards", json={"label": "studio"})
        assert made.status_code == 201, made.text
        token, link_id = made.json()["token"], made.json()["link"]["id"]
        assert made.json()["path"] == f"/board/{token}"
        lists = (await svc.api.post("/api/flows/nowosci/boards", json={})).json()["token"]

        async with httpx.AsyncClient(base_url=svc.base_url) as anyone:  # no API token, no session
            figures = await anyone.get(f"/api/board/{token}")
            assert figures.status_code == 200, figures.text
            assert figures.json()["figures"]["tally"] == [
                {"option": "A", "label": "A", "votes": 2},
                {"option": "B", "label": "B", "votes": 1},
            ]
            _no_number(figures.text)
            members = await anyone.get(f"/api/board/{lists}")
            assert members.json()["figures"] == {"counts": {"pending": 0, "active": 3, "left": 0}}
            _no_number(members.text)
            page = await anyone.get(f"/board/{token}")
            assert page.status_code == 200 and "<h1>final</h1>" in page.text
            assert re.search(r'<meta http-equiv="refresh" content="\d+">', page.text)
            assert "script-src 'self'" in page.headers["content-security-policy"]
            assert "<script" not in page.text
            _no_number(page.text)

            revoked = await svc.api.post(f"/api/flows/final/boards/{link_id}/revoke")
            assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "api"
            for path in (f"/api/board/{token}", f"/board/{token}"):
                gone = await anyone.get(path)
                assert gone.status_code == 404 and "revoked" in gone.text
            made_up = await anyone.get("/api/board/b_madeup")
            assert (
                made_up.status_code == 404
                and made_up.json() == (await anyone.get(f"/api/board/{token}")).json()
            )
        again = await svc.api.post(f"/api/flows/final/boards/{link_id}/revoke")
        assert again.status_code == 409
        listed = (await svc.api.get("/api/flows/final/boards")).json()
        assert [(b["id"], b["label"], b["revoked_by"]) for b in listed] == [(link_id, "studio", "api")]
        assert "token" not in listed[0]
        logged = await svc.rows(
            "SELECT action, target FROM audit_log WHERE action LIKE 'boards.%' ORDER BY id"
        )
        assert [tuple(r) for r in logged] == [
            ("boards.create", "final"),
            ("boards.create", "nowosci"),
            ("boards.revoke", "final"),
        ]
        assert await svc.scalar("SELECT count(*) FROM board_links WHERE token_sha256 = :t", t=token) == 0


async def test_board_links_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        env = {"database_url": svc.settings.database_url, "flows_dir": str(flows)}
        made = await arun_cli(
            "board", "create", "final", "--label", "studio", "--by", "ola", cwd=tmp_path, **env
        )
        assert made.returncode == 0, made.stderr
        token = re.search(r"/board/(b_[\w-]+)", made.stdout)
        assert token is not None
        async with httpx.AsyncClient(base_url=svc.base_url) as anyone:
            assert (await anyone.get(f"/api/board/{token.group(1)}")).status_code == 200
            revoked = await arun_cli("board", "revoke", "1", "--by", "ola", cwd=tmp_path, **env)
            assert revoked.returncode == 0 and "revoked" in revoked.stdout
            assert (await anyone.get(f"/api/board/{token.group(1)}")).status_code == 404
        listed = await arun_cli("board", "list", cwd=tmp_path, **env)
        assert "studio" in listed.stdout and "revoked by ola" in listed.stdout
        twice = await arun_cli("board", "revoke", "1", cwd=tmp_path, **env)
        assert twice.returncode == 1 and "revoked already" in twice.stderr and "Traceback" not in twice.stderr
        nope = await arun_cli("board", "create", "nope", cwd=tmp_path, **env)
        assert nope.returncode == 1 and "no flow 'nope'" in nope.stderr
