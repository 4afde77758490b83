"""The ``reply`` kind through the real API and webhook: answers to tagged messages, classified, recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.errors import FlowFileError
from app.flows.loader import build, parse_flow
from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows

PHONE = "48600123456"
VISITS = """
id = "visits"
kind = "reply"
name = "Visit confirmations"

[reply]
tag = "visit"
answers = { confirmed = ["TAK", "YES", "1"], declined = ["NIE", "NO", "2"] }
FOLLOW_UP

[replies]
confirmed = "Dziękujemy, wizyta {{ data.when }} potwierdzona."
declined = "Wizyta {{ data.when }} odwołana."
unknown = "Nie rozumiemy. Odpisz TAK lub NIE na: {{ original }}"
expired = "Termin odpowiedzi minął {{ expires_at }}."
already = "Mamy już Twoją odpowiedź ({{ first_answer }})."
"""
STOP = """
id = "stop"
kind = "optout"
keywords = ["STOP"]

[replies]
opted_out = "Wypisano."
"""
YES_KEYWORD = """
id = "tak"
kind = "autoreply"
keywords = ["TAK"]

[replies]
reply = "TAK bez kontekstu."
"""


def visits_flow(follow_up: str | None = None) -> str:
    return VISITS.replace("FOLLOW_UP", f'follow_up = "{follow_up}"' if follow_up else "")


@pytest.fixture
async def visits(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", visits=visits_flow(), stop=STOP, tak=YES_KEYWORD)
    # The dispatcher is off: messages stay `queued`, and what the flows queued is easy to read.
    async with running(make_settings(database_url, flows_dir=str(flows), dispatcher="false")) as svc:
        yield svc


async def post_message(service: Service, **fields: Any) -> dict[str, Any]:
    body = {"to": PHONE, "text": "Wizyta jutro 10:00. Potwierdzasz? Odpisz TAK lub NIE.", "tag": "visit"}
    body |= {"data": {"when": "1 XII 10:00"}} | fields
    response = await service.api.post("/api/messages", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def answer(service: Service, sent: dict[str, Any], text: str, **fields: str) -> dict[str, str]:
    """The phone answers ``sent`` with ``text`` now: an MO whose ext_id is our ext_id."""
    fields = {"time": str(int(time.time()))} | fields
    return await send_mo(service, sender=sent["to"], text=text, ext_id=sent["ext_id"], **fields)


async def texts_to(service: Service, phone: str = PHONE) -> list[str]:
    """What the flows queued for the phone (messages sent by the API have no inbound_id)."""
    rows = await service.rows(
        "SELECT text FROM outbox WHERE to_number = :p AND inbound_id IS NOT NULL ORDER BY id", p=phone
    )
    return [r[0] for r in rows]


async def show(service: Service, message_id: int) -> dict[str, Any]:
    response = await service.api.get(f"/api/messages/{message_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_tak_is_classified_as_confirmed_recorded_and_answered(visits: Service) -> None:
    sent = await post_message(visits)
    form = await answer(visits, sent, "Tak!", time="1795000000")
    shown = await show(visits, sent["id"])
    assert shown["answer"] == "confirmed"
    assert shown["answered_at"] == "2026-11-18T11:06:40Z"  # the answer's own time
    assert [a["sms_id"] for a in shown["answers"]] == [form["sms_id"]]
    assert await texts_to(visits) == ["Dziękujemy, wizyta 1 XII 10:00 potwierdzona."]
    status = await visits.rows(
        "SELECT status, flow_id FROM inbound_messages WHERE sms_id = :s", s=form["sms_id"]
    )
    assert tuple(status[0]) == ("processed", "visits")


@pytest.mark.parametrize(("text", "expected"), [("nie", "declined"), ("2", "declined"), ("YES", "confirmed")])
async def test_aliases_are_folded_like_keywords(visits: Service, text: str, expected: str) -> None:
    sent = await post_message(visits)
    await answer(visits, sent, text)
    assert (await show(visits, sent["id"]))["answer"] == expected


async def test_answer_not_understood_is_asked_again_and_a_later_answer_counts(visits: Service) -> None:
    sent = await post_message(visits)
    await answer(visits, sent, "może jutro")
    assert (await show(visits, sent["id"]))["answer"] is None
    await answer(visits, sent, "TAK")
    assert (await show(visits, sent["id"]))["answer"] == "confirmed"
    assert await texts_to(visits) == [
        "Nie rozumiemy. Odpisz TAK lub NIE na: Wizyta jutro 10:00. Potwierdzasz? Odpisz TAK lub NIE.",
        "Dziękujemy, wizyta 1 XII 10:00 potwierdzona.",
    ]


async def test_first_answer_wins_and_a_second_gets_the_already_reply(visits: Service) -> None:
    sent = await post_message(visits)
    await answer(visits, sent, "TAK")
    await answer(visits, sent, "NIE")
    shown = await show(visits, sent["id"])
    assert shown["answer"] == "confirmed"
    assert len(shown["answers"]) == 2
    assert (await texts_to(visits))[-1] == "Mamy już Twoją odpowiedź (confirmed)."


async def test_answers_arriving_together_record_exactly_one(visits: Service) -> None:
    sent = await post_message(visits)
    forms = [mo_form(sender=PHONE, text=t, ext_id=sent["ext_id"]) for t in ["TAK", "NIE"] * 5]
    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(*(client.post(visits.mo_url, data=f) for f in forms))
    assert all(r.status_code == 200 for r in answers)
    outcomes = await visits.rows("SELECT outcome FROM flow_events WHERE flow_id = 'visits'")
    recorded = [o for (o,) in outcomes if o in ("confirmed", "declined")]
    assert len(recorded) == 1
    # One "already" reply goes out; the rest carry no news within the quiet interval.
    assert sorted(o for (o,) in outcomes if o not in recorded) == ["already"] + ["suppressed"] * 8
    assert (await show(visits, sent["id"]))["answer"] == recorded[0]


async def test_answer_after_expiry_gets_the_expired_reply_and_is_not_recorded(visits: Service) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    sent = await post_message(visits, expires_at=expires.isoformat())
    late = str(int((expires + timedelta(minutes=1)).timestamp()))  # judged by the answer's own time
    await answer(visits, sent, "TAK", time=late)
    assert (await show(visits, sent["id"]))["answer"] is None
    warsaw = expires.astimezone(ZoneInfo("Europe/Warsaw")).strftime("%Y-%m-%d %H:%M")
    assert await texts_to(visits) == [f"Termin odpowiedzi minął {warsaw}."]


async def test_answer_before_expiry_is_recorded(visits: Service) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    sent = await post_message(visits, expires_at=expires.isoformat())
    in_time = str(int((expires - timedelta(minutes=1)).timestamp()))
    await answer(visits, sent, "TAK", time=in_time)
    assert (await show(visits, sent["id"]))["answer"] == "confirmed"


async def test_stop_wins_over_the_reply_flow(visits: Service) -> None:
    sent = await post_message(visits)
    await answer(visits, sent, "STOP")
    assert (await show(visits, sent["id"]))["answer"] is None
    assert await texts_to(visits) == ["Wypisano."]


async def test_an_answer_goes_to_the_reply_flow_before_keywords_and_without_ext_id_to_keywords(
    visits: Service,
) -> None:
    sent = await post_message(visits)
    await answer(visits, sent, "TAK")
    await send_mo(visits, sender=PHONE, text="TAK")  # no ext_id: an ordinary keyword message
    assert await texts_to(visits) == ["Dziękujemy, wizyta 1 XII 10:00 potwierdzona.", "TAK bez kontekstu."]


async def test_answer_to_a_message_with_another_tag_is_linked_and_routed_as_usual(visits: Service) -> None:
    sent = await post_message(visits, tag="other")
    form = await answer(visits, sent, "TAK")
    assert await texts_to(visits) == ["TAK bez kontekstu."]
    linked = await visits.rows("SELECT reply_to_id, correlation FROM inbound_messages WHERE sms_id = :s",
                               s=form["sms_id"])  # fmt: skip
    assert tuple(linked[0]) == (sent["id"], "matched")


async def test_follow_up_is_queued_after_the_reply(database_url: str, tmp_path: Path) -> None:
    follow = "Przypomnimy o wizycie {{ data.when }} dzień wcześniej ({{ answer }})."
    flows = write_flows(tmp_path / "flows", visits=visits_flow(follow))
    async with running(make_settings(database_url, flows_dir=str(flows), dispatcher="false")) as svc:
        sent = await post_message(svc)
        await answer(svc, sent, "TAK")
        await answer(svc, sent, "TAK")  # already answered: no second follow-up
        assert await texts_to(svc) == [
            "Dziękujemy, wizyta 1 XII 10:00 potwierdzona.",
            "Przypomnimy o wizycie 1 XII 10:00 dzień wcześniej (confirmed).",
            "Mamy już Twoją odpowiedź (confirmed).",
        ]


async def test_message_queued_for_a_reply_flow_takes_its_tag(visits: Service) -> None:
    response = await visits.api.post("/api/messages", json={"to": PHONE, "text": "Wizyta?", "flow": "visits"})
    assert response.status_code == 201
    assert response.json()["tag"] == "visit"
    assert response.json()["flow_id"] == "visits"
    clash = await visits.api.post(
        "/api/messages", json={"to": PHONE, "text": "?", "flow": "visits", "tag": "x"}
    )
    assert clash.status_code == 422
    assert "takes answers tagged 'visit'" in clash.json()["detail"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            ('tag = "visit"', 'tag = "visit"\nwebhook = "ftp://x"'),
            "reply.webhook: 'ftp://x' is not an http(s) URL",
        ),
        (('confirmed = "', 'maybe = "'), "replies.maybe: not a reply of this flow"),
        (("declined = [", "unknown = ["), "reply.answers.unknown: unknown is the name of a reply"),
        (('"NIE", "NO", "2"', '"NIE", "TAK"'), "alias 'TAK' is already used by confirmed"),
        (
            ('kind = "reply"', 'kind = "reply"\nkeywords = ["WIZYTA"]'),
            "keywords: a reply flow takes answers by",
        ),
    ],
)
def test_flow_file_mistakes_name_the_field(change: tuple[str, str], error: str) -> None:
    source = visits_flow().replace(*change)
    with pytest.raises(FlowFileError, match=r"visits\.toml: ") as raised:
        parse_flow(Path("visits.toml"), source.encode())
    assert error in str(raised.value)


def test_two_reply_flows_cannot_take_one_tag() -> None:
    one = parse_flow(Path("a.toml"), visits_flow().encode())
    two = parse_flow(Path("b.toml"), visits_flow().replace('id = "visits"', 'id = "visits2"').encode())
    with pytest.raises(FlowFileError) as raised:
        build([one, two])
    assert "b.toml: reply.tag: 'visit' is already taken by a.toml" in str(raised.value)


def test_flows_check_measures_the_follow_up_with_sample_data() -> None:
    flow = parse_flow(Path("visits.toml"), visits_flow("Do zobaczenia {{ data.when }}!").encode())
    measured = flow.check_replies()
    assert set(measured) == {"confirmed", "declined", "unknown", "expired", "already", "follow_up"}
    assert measured["follow_up"].length == len("Do zobaczenia <when>!")


async def test_results_count_the_answers_by_class(visits: Service) -> None:
    confirmed, declined, _ = [await post_message(visits) for _ in range(3)]
    await answer(visits, confirmed, "TAK")
    await answer(visits, declined, "NIE")
    results = (await visits.api.get("/api/flows/visits/results")).json()
    assert results["results"] == {
        "tag": "visit",
        "sent": 3,
        "answers": {"confirmed": 1, "declined": 1},
        "unanswered": 1,
    }
    assert results["outcomes"] == {"confirmed": 1, "declined": 1}
