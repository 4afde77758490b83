"""``smsflows contacts forget`` and ``smsflows retention purge``: personal data goes, counts stay."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import LargeBinary, String, Text, select, text

from app.db import access_models, board_models, draw_models, flow_models  # noqa: F401  (every table)
from app.db.models import Base, utcnow
from app.draws import DrawRecord, DrawRequest, run_draw, verify
from app.errors import SettingsError
from app.flows.loader import find_flow
from app.privacy.pseudonyms import pseudonym
from app.privacy.retention import purge
from app.settings import load_settings
from tests.conftest import Service, make_settings, running, send_mo, write_flows
from tests.test_audit import STOP, SUBSCRIPTION
from tests.test_flows_cli import arun_cli
from tests.test_replay import vote

KEY = "test-pseudonym-key"
ECHO = """
id = "echo"
kind = "autoreply"
keywords = ["ECHO"]

[replies]
reply = "Napisałeś: {{ args }}"
"""
PHONE = "48600111222"
OTHERS = ["48600000001", "48600000002"]


async def _text_columns_holding(svc: Service, needle: str) -> list[str]:
    """Every text and binary column of every table, searched for ``needle``."""
    found = []
    async with svc.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text | LargeBinary)]
            if not columns:
                continue
            for row in (await conn.execute(select(*columns))).all():
                for column, value in zip(columns, row, strict=True):
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value or "").encode()
                    if needle.encode() in raw:
                        found.append(f"{table.name}.{column.name}")
    return sorted(set(found))


async def _cli(svc: Service, *args: str) -> tuple[int, str]:
    s = svc.settings
    result = await arun_cli(
        *args,
        cwd=Path(s.flows_dir).parent,
        database_url=s.database_url,
        flows_dir=s.flows_dir,
        pseudonym_key=KEY,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


async def test_forget_removes_the_number_everywhere_and_keeps_the_counts(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(
        tmp_path / "flows",
        final=vote("final", "GLOS", broken=False),
        nowosci=SUBSCRIPTION,
        stop=STOP,
        echo=ECHO,
    )
    settings = make_settings(database_url, flows_dir=str(flows), pseudonym_key=KEY)
    async with running(settings) as svc:
        for phone in [PHONE, *OTHERS]:
            await send_mo(svc, sender=phone, text="GLOS A")
            await send_mo(svc, sender=phone, text="NOWOSCI")
        await send_mo(svc, sender=PHONE, text=f"ECHO mój numer to {PHONE}")
        await send_mo(svc, sender=PHONE, text="GLOS B")  # a repeat
        async with httpx.AsyncClient() as client:  # a broken request from the same phone
            body = f"number=70120&sender={PHONE}&text=hej&sms_id=short&time=wczoraj".encode()
            await client.post(
                svc.mo_url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        final = find_flow(flows, "final")
        drawn = await run_draw(svc.engine, final, DrawRequest(winners=3, seed="s"), "t", KEY)
        before = (await svc.api.get("/api/flows/final/results")).json()["results"]
        lists = (await svc.api.get("/api/flows/nowosci/results")).json()["results"]
        assert await _text_columns_holding(svc, PHONE[-9:]), "the number is stored before"

        code, out = await _cli(svc, "contacts", "forget", "+48 600 111 222", "--yes", "--by", "RODO 1/2026")
        assert code == 0, out
        alias = pseudonym(KEY, PHONE)
        assert alias in out and "votes 1" in out

        assert await _text_columns_holding(svc, PHONE[-9:]) == []
        assert await _text_columns_holding(svc, "mój numer") == [], "its texts are gone"
        assert (await svc.api.get("/api/flows/final/results")).json()["results"] == before
        after = (await svc.api.get("/api/flows/nowosci/results")).json()["results"]
        # Members who joined at the same moment come in phone order, so the alias takes its own place.
        renamed = [{**m, "phone": alias if m["phone"] == PHONE else m["phone"]} for m in lists["subscribers"]]
        assert after["subscribers"] == sorted(renamed, key=lambda m: (m["since"], m["phone"]))
        assert {k: v for k, v in after.items() if k != "subscribers"} == {
            k: v for k, v in lists.items() if k != "subscribers"
        }
        assert await svc.scalar("SELECT count(*) FROM votes WHERE sender = :a", a=alias) == 1
        code, out = await _cli(svc, "audit", "final")
        assert code == 0, out
        stored = (await svc.api.get("/api/flows/final/draws/1")).json()
        assert stored["entries_sha256"] == drawn.entries_sha256
        assert verify(msgspec.convert(stored, DrawRecord)).ok, "the draw still verifies"
        erasure = await svc.rows(
            "SELECT target, actor, detail FROM audit_log WHERE action = 'contacts.forget'"
        )
        assert [(r[0], r[1]) for r in erasure] == [(alias, "RODO 1/2026")]
        assert json.loads(erasure[0][2])["rows"]["inbound_messages"] == 4
        for other in OTHERS:
            assert await svc.scalar("SELECT count(*) FROM votes WHERE sender = :p", p=other) == 1

        code, out = await _cli(svc, "contacts", "forget", PHONE, "--yes")
        assert code == 0 and "nothing stored" in out


async def test_forget_needs_the_pseudonym_key_and_says_so(database_url: str, tmp_path: Path) -> None:
    async with running(make_settings(database_url)) as svc:
        s = svc.settings
        result = await arun_cli(
            "contacts", "forget", PHONE, "--yes", cwd=tmp_path, database_url=s.database_url, pseudonym_key=""
        )
        assert result.returncode == 1 and "SMSFLOWS_PSEUDONYM_KEY" in result.stderr
        assert "Traceback" not in result.stderr


async def test_retention_purges_old_bodies_and_texts_and_keeps_results(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=vote("final", "GLOS", broken=False))
    settings = make_settings(
        database_url, flows_dir=str(flows), retention_raw_days="30", retention_text_days="180"
    )
    async with running(settings) as svc:
        for phone in OTHERS:
            await send_mo(svc, sender=phone, text="GLOS A")
        await send_mo(svc, sender="48600000009", text="GLOS B")
        async with httpx.AsyncClient() as client:
            await client.post(svc.mo_url, content=b"sender=x", headers={"Content-Type": "text/plain"})
        old = utcnow() - timedelta(days=200)
        async with svc.engine.begin() as conn:
            await conn.execute(
                text("UPDATE inbound_messages SET received_at = :t WHERE sender <> '48600000009'"), {"t": old}
            )
            await conn.execute(text("UPDATE outbox SET created_at = :t, status = 'sent'"), {"t": old})
            await conn.execute(text("UPDATE quarantine SET received_at = :t"), {"t": old})
        before = (await svc.api.get("/api/flows/final/results")).json()["results"]
        purged = await purge(svc.engine, svc.settings)
        assert (purged.raw_bodies, purged.quarantine, purged.inbound_texts, purged.outbox_texts) == (
            2,
            1,
            2,
            3,
        )
        texts = await svc.rows("SELECT sender, text, length(raw_body) > 0 FROM inbound_messages ORDER BY id")
        assert [tuple(r) for r in texts] == [
            (OTHERS[0], "", False),
            (OTHERS[1], "", False),
            ("48600000009", "GLOS B", True),
        ]
        assert (await svc.api.get("/api/flows/final/results")).json()["results"] == before
        assert await svc.scalar("SELECT count(*) FROM flow_events") == 3
        again = await purge(svc.engine, svc.settings)
        assert again.summary().startswith("0 raw body(ies), 0 quarantined")


async def test_the_service_purges_on_its_own_schedule(database_url: str, tmp_path: Path) -> None:
    async with running(make_settings(database_url)) as svc:
        await send_mo(svc, sender=OTHERS[0], text="GLOS A")
        async with svc.engine.begin() as conn:
            await conn.execute(
                text("UPDATE inbound_messages SET received_at = :t"), {"t": utcnow() - timedelta(days=90)}
            )
    scheduled = make_settings(database_url, retention_raw_days="30", retention_purge_hours="24")
    async with running(scheduled) as svc:
        for _ in range(500):  # the first purge runs as the service starts
            if await svc.scalar("SELECT length(raw_body) FROM inbound_messages") == 0:
                break
            await asyncio.sleep(0.02)
        assert await svc.scalar("SELECT length(raw_body) FROM inbound_messages") == 0
        assert await svc.scalar("SELECT text FROM inbound_messages") == "GLOS A"  # texts have no age set


def test_retention_ages_must_be_positive() -> None:
    with pytest.raises(
        SettingsError, match="SMSFLOWS_RETENTION_RAW_DAYS: expected a positive number of days"
    ):
        load_settings({"SMSFLOWS_RETENTION_RAW_DAYS": "0"}, None)
    with pytest.raises(SettingsError, match="SMSFLOWS_RETENTION_PURGE_HOURS"):
        load_settings({"SMSFLOWS_RETENTION_PURGE_HOURS": "-1"}, None)
    assert load_settings({"SMSFLOWS_RETENTION_TEXT_DAYS": ""}, None).retention_text_days is None
