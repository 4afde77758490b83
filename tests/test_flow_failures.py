"""A flow that raises: its message is kept as failed, and the batch's other messages go on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import make_settings, mo_form, running, send_mo, write_flows
from tests.test_flow_autoreply import INFO


async def test_flow_that_raises_marks_the_message_failed_and_keeps_it(
    database_url: str, tmp_path: Path
) -> None:
    # Renders with the sample data `flows check` uses, divides by zero for any other phone.
    broken = INFO.replace("Cześć {{ sender }}!", "{{ 1 // ((sender == '48600123456') | int) }}")
    flows = write_flows(tmp_path / "flows", info=broken.replace("transliterate = true\n", ""))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        failed = await send_mo(svc, text="INFO", sender="48600999000")
        ok = await send_mo(svc, text="something else")
        rows = dict(await svc.rows("SELECT sms_id, status FROM inbound_messages"))
        error = await svc.scalar("SELECT error FROM inbound_messages WHERE sms_id = :s", s=failed["sms_id"])
        assert await svc.scalar("SELECT count(*) FROM outbox") == 0
        assert (
            await svc.scalar(
                "SELECT count(*) FROM flow_events WHERE inbound_id IS NOT NULL AND outcome = 'replied'"
            )
            == 0
        )
    assert rows == {failed["sms_id"]: "failed", ok["sms_id"]: "ignored"}
    assert "ZeroDivisionError" in error


async def test_one_failing_message_in_a_batch_leaves_its_neighbours_processed(
    database_url: str, tmp_path: Path
) -> None:
    # Renders for the sample phone only: every other phone's INFO fails, the vote-free HELLO works.
    broken = INFO.replace("Cześć {{ sender }}!", "{{ 1 // ((sender == '48600123456') | int) }}")
    hello = INFO.replace('id = "info"', 'id = "hello"').replace(
        'keywords = ["INFO", "POMOC"]', 'keywords = ["HELLO"]'
    )
    flows = write_flows(tmp_path / "flows", info=broken.replace("transliterate = true\n", ""), hello=hello)
    forms = [mo_form(text="HELLO", sender=f"4860050{i:04d}") for i in range(20)]
    forms.insert(7, mo_form(text="INFO", sender="48600999111"))
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=25)) as client:
            answers = await asyncio.gather(*(client.post(svc.mo_url, data=f) for f in forms))
        assert all(a.status_code == 200 for a in answers)
        statuses = dict(await svc.rows("SELECT sender, status FROM inbound_messages"))
        replies = await svc.scalar("SELECT count(*) FROM outbox")
    assert statuses.pop("48600999111") == "failed"
    assert set(statuses.values()) == {"processed"} and len(statuses) == 20
    assert replies == 20
