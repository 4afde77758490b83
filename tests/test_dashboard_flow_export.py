"""``/flows/{id}/entries.csv``: a flow's entries as the CLI exports them, streamed, numbers masked for
viewers as on the page, formula-looking answers as text."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from app.reads.results import entries_page
from tests.conftest import send_mo, write_flows
from tests.dashboard import dashboard_service, signed_in
from tests.test_dashboard_kinds import _example
from tests.test_dashboard_pages import VOTE


def _csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def _flows(tmp_path: Path) -> Path:
    return write_flows(
        tmp_path / "flows", final=VOTE, nowosci=_example("nowosci"), ankieta=_example("ankieta")
    )


async def _mo(svc: object, text: str, sender: str) -> None:
    await send_mo(svc, text=text, sender=sender, time=str(int(time.time())))  # type: ignore[arg-type]


async def test_a_vote_flow_exports_one_row_per_vote_under_its_header(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(_flows(tmp_path))) as svc:
        for sender, text in (
            ("48600000001", "GLOS ANNA"),
            ("48600000002", "GLOS B"),
            ("48600000003", "GLOS A"),
        ):
            await _mo(svc, text, sender)
        async with signed_in(svc, "olek", "operator") as client:
            page = await client.get("/flows/final")
            assert 'href="/flows/final/entries.csv" download>Export CSV<' in page.text
            export = await client.get("/flows/final/entries.csv")
            assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
            assert 'filename="final-entries.csv"' in export.headers["content-disposition"]
            header, *rows = _csv(export.text)
            assert header[:2] == ["id", "flow_id"] and "option" in header and "sender" in header
            assert len(rows) == 3
            options = [dict(zip(header, r, strict=True))["option"] for r in rows]
            assert options == ["A", "B", "A"]  # oldest first


async def test_a_subscription_flow_exports_its_lists_members(database_url: str, tmp_path: Path) -> None:
    async with dashboard_service(database_url, flows_dir=str(_flows(tmp_path))) as svc:
        for sender in ("48600000002", "48600000001"):
            await _mo(svc, "NOWOSCI", sender)
            await _mo(svc, "POTWIERDZAM", sender)
        await _mo(svc, "NOWOSCI", "48600000003")  # pending
        async with signed_in(svc, "olek", "operator") as client:
            header, *rows = _csv((await client.get("/flows/nowosci/entries.csv")).text)
            members = [dict(zip(header, r, strict=True)) for r in rows]
            assert [(m["phone"], m["status"]) for m in members] == [
                ("48600000001", "active"),
                ("48600000002", "active"),
                ("48600000003", "pending"),
            ]


async def test_entries_come_a_page_at_a_time_by_key_and_add_up_to_all(
    database_url: str, tmp_path: Path
) -> None:
    flows = _flows(tmp_path)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        for i in range(5):
            await _mo(svc, "NOWOSCI", f"4860000000{i}")
        live = svc.app.state.flows.current.flows
        lst, vote = live["nowosci"], live["final"]
        async with svc.engine.connect() as conn:
            first = await conn.run_sync(lambda c: entries_page(c, lst, limit=2))
            assert [r.phone for r in first.items] == ["48600000000", "48600000001"]
            assert first.next_cursor == "48600000001"
            rest = await conn.run_sync(lambda c: entries_page(c, lst, after=first.next_cursor, limit=3))
            assert [r.phone for r in rest.items] == ["48600000002", "48600000003", "48600000004"]
            assert rest.next_cursor == "48600000004"  # a full page: the next one says it was the last
            last = await conn.run_sync(lambda c: entries_page(c, lst, after=rest.next_cursor, limit=3))
            assert last.items == [] and last.next_cursor is None and last.columns == first.columns
            none = await conn.run_sync(lambda c: entries_page(c, vote))
            assert none.items == [] and none.next_cursor is None


async def test_a_viewer_exports_numbers_masked_and_an_operator_whole(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(_flows(tmp_path))) as svc:
        await _mo(svc, "GLOS A", "48600123456")
        for name, role, shown in (
            ("vera", "viewer", "48600***456"),
            ("olek", "operator", "48600123456"),
            ("ada", "admin", "48600123456"),
        ):
            async with signed_in(svc, name, role) as client:
                page = (await client.get("/flows/final")).text
                assert shown in page, role  # the page and its export agree
                export = await client.get("/flows/final/entries.csv")
                header, row = _csv(export.text)
                assert dict(zip(header, row, strict=True))["sender"] == shown, role
                if role == "viewer":
                    assert "48600123456" not in export.text


async def test_an_answer_that_looks_like_a_formula_is_exported_as_text(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(_flows(tmp_path))) as svc:
        for text in ("ANKIETA", "7", "TAK", '=HYPERLINK("http://x.example","klik")'):
            await _mo(svc, text, "48600123456")
        async with signed_in(svc, "olek", "operator") as client:
            header, *rows = _csv((await client.get("/flows/ankieta/entries.csv")).text)
            values = [dict(zip(header, r, strict=True))["value"] for r in rows]
            assert values == ["7", "TAK", '\'=HYPERLINK("http://x.example","klik")']


async def test_an_unknown_flow_has_no_export_and_signing_out_closes_it(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        dashboard_service(database_url, flows_dir=str(_flows(tmp_path))) as svc,
        signed_in(svc, "vera", "viewer") as client,
    ):
        missing = await client.get("/flows/nie-ma/entries.csv")
        assert missing.status_code == 404 and "nie-ma" in missing.text and "Status 404" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        client.cookies.clear()
        signed_out = await client.get("/flows/final/entries.csv")
        assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/login")
