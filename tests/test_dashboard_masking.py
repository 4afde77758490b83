"""Phone numbers that are not a sender or a recipient column, masked for viewers like the others:
a survey's phone-step answers, what a decision's detail quotes, a message's data and send errors;
on the pages and in their CSV exports, whole for operators."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import msgspec

from app.dashboard.auth import SignedIn
from app.dashboard.phones import shown_answer, shown_json, shown_text
from app.db.models import utcnow
from tests.conftest import Service, send_mo, write_flows
from tests.dashboard import dashboard_service, failed_send, inbound, insert, no_funds, signed_in
from tests.test_dashboard_kinds import _example

SENDER = "48600123456"
REFERRED = "48600111222"  # the number a phone step was answered with
REFERRED_MASKED = "48600***222"

POLEC = """
id = "polec"
kind = "survey"
name = "Poleć znajomego"
numbers = ["70120"]
keywords = ["POLEC"]

[[survey.steps]]
id = "znajomy"
type = "phone"
ask = "Podaj numer znajomego."

[[survey.steps]]
id = "uwagi"
type = "text"
ask = "Co mu przekazać?"

[replies]
done = "Dziękujemy!"
"""

VIEWER, OPERATOR = SignedIn(1, "vera", "viewer"), SignedIn(2, "olek", "operator")


def _csv(text: str) -> list[dict[str, str]]:
    header, *rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    return [dict(zip(header, r, strict=True)) for r in rows]


async def _mo(svc: Service, text: str, sender: str = SENDER) -> str:
    form = await send_mo(svc, text=text, sender=sender, time=str(int(time.time())))
    return form["sms_id"]


async def _survey(tmp_path: Path) -> Path:
    return write_flows(tmp_path / "flows", polec=POLEC, info=_example("info"))


def test_numbers_inside_sentences_and_json_are_masked_for_a_viewer_only() -> None:
    reason = f"message 5 was sent to {REFERRED}, but this answer comes from +48 600 123 456"
    assert shown_text(VIEWER, reason) == (
        f"message 5 was sent to {REFERRED_MASKED}, but this answer comes from 48600***456"
    )
    assert shown_text(OPERATOR, reason) == reason
    # Dates, times, codes and ids are not numbers of phones.
    for kept in ("opens 2026-12-02 15:10", "KOD 12345678", "ext 3f91234567890ab", "outbox 17"):
        assert shown_text(VIEWER, kept) == kept
    detail = {
        "answers": {"znajomy": REFERRED, "ocena": "7"},
        "data": [{"phone": "600111222"}],
        "id": 123456789,
    }
    assert shown_json(VIEWER, detail) == {
        "answers": {"znajomy": REFERRED_MASKED, "ocena": "7"},
        "data": [{"phone": REFERRED_MASKED}],
        "id": 123456789,  # a number in JSON is a count or an id, never a phone
    }
    assert shown_json(OPERATOR, detail) == detail
    assert shown_answer(VIEWER, "phone", REFERRED) == REFERRED_MASKED
    assert shown_answer(VIEWER, "text", "Dzięki") == "Dzięki"
    assert shown_answer(VIEWER, None, f"tel {REFERRED}") == f"tel {REFERRED_MASKED}"  # a step now gone
    assert shown_answer(OPERATOR, "phone", REFERRED) == REFERRED


async def test_a_viewer_reads_phone_answers_masked_on_the_survey_page_export_and_details(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(await _survey(tmp_path))) as svc:
        await _mo(svc, "POLEC")
        await _mo(svc, "600 111 222")  # the phone step: stored as 48600111222
        last = await _mo(svc, "Pozdrowienia")  # completes the survey: its detail holds the answers
        for name, role in (("vera", "viewer"), ("olek", "operator")):
            whole = role == "operator"
            shown = REFERRED if whole else REFERRED_MASKED
            async with signed_in(svc, name, role) as client:
                page = (await client.get("/flows/polec")).text
                assert shown in page, role
                assert (REFERRED in page) == whole, role

                export = (await client.get("/flows/polec/entries.csv")).text
                answers = {r["step"]: r["value"] for r in _csv(export)}
                assert answers == {"znajomy": shown, "uwagi": "Pozdrowienia"}, role
                assert (REFERRED in export) == whole, role

                message = (await client.get(f"/messages/in/{last}")).text
                assert "completed" in message and f'"znajomy": "{shown}"' in message, role
                assert (REFERRED in message) == whole, role

                contact = (await client.get(f"/contacts/{SENDER}")).text
                assert f"<td>znajomy</td><td>{shown}</td>" in contact, role
                assert (REFERRED in contact) == whole, role


async def test_a_viewer_reads_numbers_masked_in_details_data_and_send_errors(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(await _survey(tmp_path))) as svc:
        await _mo(svc, f"INFO {REFERRED}")  # an autoreply keeps the words after its keyword
        message = inbound("TAK", sender=SENDER, status="processed")
        await insert(svc, "inbound_messages", [message])
        inbound_id = await svc.scalar(
            "SELECT id FROM inbound_messages WHERE sms_id = :s", s=message["sms_id"]
        )
        reason = f"message 9 was sent to {REFERRED}, but this answer comes from {SENDER}"
        event = {"inbound_id": inbound_id, "sender": SENDER, "flow_id": None, "outcome": "reply_unmatched"}
        event["created_at"] = utcnow()
        detail = {"ext_id": "abc", "reason": reason, "outbox_id": 9}
        await insert(svc, "flow_events", [event | {"detail": msgspec.json.encode(detail).decode()}])
        data = msgspec.json.encode({"referred": REFERRED}).decode()
        await insert(svc, "outbox", [failed_send(SENDER, no_funds(SENDER)) | {"data": data}])
        sent_id = await svc.scalar("SELECT id FROM outbox WHERE data IS NOT NULL")
        for name, role in (("vera", "viewer"), ("olek", "operator")):
            whole = role == "operator"
            async with signed_in(svc, name, role) as client:
                events = _csv((await client.get("/flows/info/entries.csv")).text)
                assert [e["outcome"] for e in events] == ["replied"], role
                args = msgspec.json.decode(events[0]["detail"])["args"]
                assert args == (REFERRED if whole else REFERRED_MASKED), role

                page = (await client.get(f"/messages/in/{message['sms_id']}")).text
                assert "reply_unmatched" in page, role
                assert ("48600***456" in page) != whole and (REFERRED_MASKED in page) != whole, role

                sent = (await client.get(f"/messages/out/{sent_id}")).text
                assert "status 202" in sent and "referred" in sent, role
                assert (REFERRED in sent) == whole and (REFERRED_MASKED in sent) != whole, role

                for path in ("/messages/out", "/messages/out.csv"):
                    listed = (await client.get(path)).text
                    assert "status 202" in listed, (role, path)
                    assert (SENDER in listed) == whole, (role, path)
                if not whole:
                    for body in (page, sent):
                        assert SENDER not in body and REFERRED not in body
