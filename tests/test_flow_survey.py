"""Surveys through the real webhook: steps, answer types, retries, timeouts, interruptions, results."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, update

from app.db.flow_models import Conversation
from app.errors import FlowFileError
from app.flows.kinds.survey import SurveyFlow
from app.flows.kinds.survey_steps import ChoiceStep, EmailStep, IntegerStep, PhoneStep, TextStep
from app.flows.loader import load_dir
from app.reads.results import kind_results
from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows

SURVEY = """
id = "opinia"
kind = "survey"
numbers = ["70120"]
keywords = ["ANKIETA"]

[survey]
timeout_minutes = 30
on_keyword = "ON_KEYWORD"
max_retries = 2

[[survey.steps]]
id = "rating"
type = "integer"
ask = "Jak oceniasz program od 1 do 10?"
min = 1
max = 10

[[survey.steps]]
id = "again"
type = "choice"
ask = "Dzięki za {{ answers.rating }}! Obejrzysz ponownie? TAK/NIE"
choices = { TAK = ["T", "YES", "chętnie"], NIE = ["N", "NO"] }
retry = "Odpowiedz TAK albo NIE."

[[survey.steps]]
id = "comment"
type = "text"
ask = "Co poprawić? (krótko)"
max_length = 40

[replies]
done = "Dziękujemy! Ocena: {{ answers.rating }}, ponownie: {{ answers.again }}."
retry = "Nie rozumiemy. {{ question }}"
aborted = "Ankieta przerwana. Wyślij ANKIETA, aby zacząć od nowa."
busy = "Najpierw dokończ ankietę. {{ question }}"
"""
CONTACT = """
id = "kontakt"
kind = "survey"
numbers = ["70120"]
keywords = ["KONTAKT"]
[[survey.steps]]
id = "phone"
type = "phone"
ask = "Podaj numer telefonu."
[[survey.steps]]
id = "email"
type = "email"
ask = "Podaj e-mail."
[replies]
done = "Zapisane: {{ answers.phone }}, {{ answers.email }}."
"""
INFO = """
id = "info"
kind = "autoreply"
numbers = ["70120"]
keywords = ["INFO", "TAK"]
[replies]
reply = "Program o 20:00."
"""
Q_RATING = "Jak oceniasz program od 1 do 10?"
Q_AGAIN = "Dzięki za 8! Obejrzysz ponownie? TAK/NIE"
Q_COMMENT = "Co poprawić? (krótko)"
T0 = 1764540000
PHONE = "48600123456"


def survey_flow(on_keyword: str = "abort") -> str:
    return SURVEY.replace("ON_KEYWORD", on_keyword)


@pytest.fixture
async def survey(database_url: str, tmp_path: Path) -> Any:
    flows = write_flows(tmp_path / "flows", opinia=survey_flow(), info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        yield svc


async def say(service: Service, *texts: str, sender: str = PHONE, at: int = T0) -> None:
    for text in texts:
        await send_mo(service, text=text, sender=sender, time=str(at))


async def replies(service: Service, sender: str = PHONE) -> list[str]:
    rows = await service.rows("SELECT text FROM outbox WHERE to_number = :s ORDER BY id", s=sender)
    return [r[0] for r in rows]


async def conversations(service: Service, sender: str = PHONE) -> list[tuple[str, str, str]]:
    sql = "SELECT flow_id, step, status FROM conversations WHERE sender = :s ORDER BY id"
    return [tuple(r) for r in await service.rows(sql, s=sender)]


async def answers(service: Service, sender: str = PHONE) -> dict[str, str]:
    rows = await service.rows("SELECT step, value FROM survey_answers WHERE sender = :s", s=sender)
    return dict(rows)


async def results(service: Service, directory: Path, flow_id: str = "opinia") -> dict[str, Any]:
    definition = load_dir(directory).flows[flow_id].definition

    def read(conn: Connection) -> dict[str, Any]:
        found: dict[str, Any] = msgspec.to_builtins(kind_results(conn, definition))
        return found

    async with service.engine.connect() as conn:
        return await conn.run_sync(read)


async def test_survey_asks_each_step_stores_the_answers_and_sends_done(survey: Service) -> None:
    await say(survey, "ankieta", " 8 ", "chętnie!", "Więcej  muzyki")
    assert await replies(survey) == [
        Q_RATING,
        Q_AGAIN,
        Q_COMMENT,
        "Dziękujemy! Ocena: 8, ponownie: TAK.",
    ]
    assert await answers(survey) == {"rating": "8", "again": "TAK", "comment": "Więcej muzyki"}
    assert await conversations(survey) == [("opinia", "comment", "completed")]
    outcomes = [r[0] for r in await survey.rows("SELECT outcome FROM flow_events ORDER BY id")]
    assert outcomes == ["started", "answered", "answered", "completed"]
    statuses = {r[0] for r in await survey.rows("SELECT status FROM inbound_messages")}
    assert statuses == {"processed"}


async def test_invalid_answer_is_asked_again_and_a_valid_one_moves_on(survey: Service) -> None:
    await say(survey, "ANKIETA", "jedenaście", "11", "8", "może")
    assert await replies(survey) == [
        Q_RATING,
        f"Nie rozumiemy. {Q_RATING}",
        f"Nie rozumiemy. {Q_RATING}",
        Q_AGAIN,
        "Odpowiedz TAK albo NIE.",  # the step's own retry wins over the survey's
    ]
    assert await answers(survey) == {"rating": "8"}
    assert await conversations(survey) == [("opinia", "again", "active")]


async def test_more_invalid_answers_than_max_retries_abort_the_survey(survey: Service) -> None:
    await say(survey, "ANKIETA", "zero", "0", "100")
    assert (await replies(survey))[-1] == "Ankieta przerwana. Wyślij ANKIETA, aby zacząć od nowa."
    assert await conversations(survey) == [("opinia", "rating", "aborted")]
    await say(survey, "8")  # no conversation any more: nothing matches a bare number
    assert await survey.scalar("SELECT status FROM inbound_messages ORDER BY id DESC LIMIT 1") == "ignored"
    assert await answers(survey) == {}


async def test_each_answer_gives_the_phone_another_timeout(survey: Service) -> None:
    await say(survey, "ANKIETA", at=T0)
    await say(survey, "8", at=T0 + 25 * 60)
    await say(survey, "nie", at=T0 + 50 * 60)  # 50 minutes after the start, 25 after the last answer
    assert await answers(survey) == {"rating": "8", "again": "NIE"}


async def test_expired_conversation_lets_the_next_message_match_normally(survey: Service) -> None:
    await say(survey, "ANKIETA", at=T0)
    # Sent 31 minutes later by the message's own time, whenever it is delivered.
    await say(survey, "8", "INFO", at=T0 + 31 * 60)
    assert await conversations(survey) == [("opinia", "rating", "expired")]
    assert await replies(survey) == [Q_RATING, "Program o 20:00."]
    assert await answers(survey) == {}


async def test_deadline_set_in_the_database_is_honoured(survey: Service) -> None:
    await say(survey, "ANKIETA", at=T0)
    async with survey.engine.begin() as conn:
        deadline = datetime.fromtimestamp(T0 - 60, UTC)
        await conn.execute(update(Conversation).values(expires_at=deadline))
    await say(survey, "ANKIETA", "8", at=T0)
    assert [c[2] for c in await conversations(survey)] == ["expired", "active"]
    assert await answers(survey) == {"rating": "8"}


async def test_other_flows_keyword_aborts_the_survey_when_on_keyword_is_abort(survey: Service) -> None:
    await say(survey, "ANKIETA", "8", "INFO")
    assert (await replies(survey))[-1] == "Program o 20:00."
    assert await conversations(survey) == [("opinia", "again", "aborted")]
    await say(survey, "NIE")
    assert await answers(survey) == {"rating": "8"}


async def test_other_flows_keyword_is_refused_with_busy_and_the_survey_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", opinia=survey_flow("refuse"), info=INFO)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await say(svc, "ANKIETA", "INFO", "8", "TAK", "Nic")
        assert await replies(svc) == [
            Q_RATING,
            f"Najpierw dokończ ankietę. {Q_RATING}",
            Q_AGAIN,
            # TAK is also the other flow's keyword, but it answers the question asked.
            Q_COMMENT,
            "Dziękujemy! Ocena: 8, ponownie: TAK.",
        ]
        assert await conversations(svc) == [("opinia", "comment", "completed")]
        outcomes = [r[0] for r in await svc.rows("SELECT outcome FROM flow_events ORDER BY id")]
    assert outcomes[:2] == ["started", "busy"]


@pytest.mark.parametrize("on_keyword", ["abort", "refuse"])
async def test_another_surveys_keyword_follows_on_keyword(
    database_url: str, tmp_path: Path, on_keyword: str
) -> None:
    flows = write_flows(tmp_path / "flows", opinia=survey_flow(on_keyword), kontakt=CONTACT)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await say(svc, "ANKIETA", "8", "KONTAKT")
        states = await conversations(svc)
        last = (await replies(svc))[-1]
    if on_keyword == "abort":
        assert states == [("opinia", "again", "aborted"), ("kontakt", "phone", "active")]
        assert last == "Podaj numer telefonu."
    else:
        assert states == [("opinia", "again", "active")]
        assert last == f"Najpierw dokończ ankietę. {Q_AGAIN}"


async def test_own_keyword_alone_starts_the_survey_again(survey: Service) -> None:
    await say(survey, "ANKIETA", "8", "Ankieta!", "3", "NIE", "ankieta za długa")
    assert await conversations(survey) == [
        ("opinia", "again", "aborted"),
        ("opinia", "comment", "completed"),
    ]
    assert (await replies(survey))[2] == Q_RATING
    rows = await survey.rows("SELECT conversation_id, step, value FROM survey_answers ORDER BY id")
    first, second = rows[0][0], rows[1][0]
    assert [tuple(r) for r in rows] == [
        (first, "rating", "8"),
        (second, "rating", "3"),
        (second, "again", "NIE"),
        (second, "comment", "ankieta za długa"),  # longer than the keyword alone: an answer
    ]


async def test_phone_and_email_answers_are_checked_and_normalised(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", kontakt=CONTACT)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        await say(svc, "KONTAKT", "12345", "+48 601-234-567", "jan@", "Jan.Nowak@Example.PL")
        assert await answers(svc) == {"phone": "48601234567", "email": "Jan.Nowak@example.pl"}
        assert await replies(svc) == [
            "Podaj numer telefonu.",
            "Podaj numer telefonu.",  # no retry reply: the question is asked again
            "Podaj e-mail.",
            "Podaj e-mail.",
            "Zapisane: 48601234567, Jan.Nowak@example.pl.",
        ]


async def test_redelivered_answer_does_not_move_the_survey_twice(survey: Service) -> None:
    await say(survey, "ANKIETA")
    answer = mo_form(text="8", sender=PHONE, time=str(T0))
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(client.post(survey.mo_url, data=answer) for _ in range(5)))
        await client.post(survey.mo_url, data=answer)
    assert await answers(survey) == {"rating": "8"}
    assert await conversations(survey) == [("opinia", "again", "active")]
    assert await replies(survey) == [Q_RATING, Q_AGAIN]


async def test_results_are_exact_under_concurrent_and_duplicate_deliveries(
    database_url: str, tmp_path: Path
) -> None:
    directory = write_flows(tmp_path / "flows", opinia=survey_flow())
    phones = [f"4860020{i:04d}" for i in range(40)]
    now = int(time.time())
    script = [
        ["ANKIETA"] * 40,
        [str(1 + i % 4) for i in range(40)],
        ["TAK" if i % 3 else "n" for i in range(40)],
        # 30 finish, 5 answer too long three times (aborted), 5 stop here (active).
        [f"Uwagi {i}" if i < 30 else "x" * 50 if i < 35 else None for i in range(40)],
    ]
    async with running(make_settings(database_url, flows_dir=str(directory))) as svc:
        for texts in [*script, script[-1], script[-1]]:
            forms = [
                mo_form(text=t, sender=p, time=str(now)) for p, t in zip(phones, texts, strict=True) if t
            ]
            # A client per round: a connection left idle past the service's keep-alive (a slow round
            # on a loaded machine) may be closed by it just as the next round sends on it.
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=60) as client:
                sent = await asyncio.gather(*(client.post(svc.mo_url, data=f) for f in forms + forms[:20]))
            assert all(r.status_code == 200 for r in sent)
        report = await results(svc, directory)
    assert report["conversations"] == {"active": 5, "completed": 30, "aborted": 5, "expired": 0}
    assert report["started"] == 40
    rating, again, comment = report["steps"]
    assert rating == {
        "id": "rating",
        "type": "integer",
        "answered": 40,
        "distribution": [{"value": str(v), "count": 10} for v in (1, 2, 3, 4)],
    }
    assert again["distribution"] == [{"value": "TAK", "count": 26}, {"value": "NIE", "count": 14}]
    assert comment["answered"] == 30
    assert sorted(comment["answers"]) == sorted(f"Uwagi {i}" for i in range(30))


async def test_results_count_a_conversation_past_its_deadline_as_expired(
    database_url: str, tmp_path: Path
) -> None:
    directory = write_flows(tmp_path / "flows", opinia=survey_flow())
    async with running(make_settings(database_url, flows_dir=str(directory))) as svc:
        await say(svc, "ANKIETA", sender="48600000001", at=T0)  # long ago, nothing since
        await say(svc, "ANKIETA", sender="48600000002", at=int(time.time()))
        report = await results(svc, directory)
    assert report["conversations"] == {"active": 1, "completed": 0, "aborted": 0, "expired": 1}
    assert [s["answered"] for s in report["steps"]] == [0, 0, 0]


@pytest.mark.parametrize(
    ("step", "text", "kept"),
    [
        (IntegerStep(id="n", ask="?", min=1, max=10), "10.", "10"),
        (IntegerStep(id="n", ask="?", min=1, max=10), "+3", "3"),
        (IntegerStep(id="n", ask="?", min=1, max=10), "0", None),
        (IntegerStep(id="n", ask="?"), "-5", "-5"),
        (IntegerStep(id="n", ask="?"), "5 5", None),
        (ChoiceStep(id="c", ask="?", choices={"TAK": ["T"], "NIE WIEM": ["NW"]}), "nie, wiem!", "NIE WIEM"),
        (ChoiceStep(id="c", ask="?", choices={"TAK": ["T"], "NIE": []}), "TAKK", None),
        (TextStep(id="t", ask="?", max_length=5), "  ab\n c ", "ab c"),
        (TextStep(id="t", ask="?", max_length=5), "   ", None),
        (TextStep(id="t", ask="?", max_length=5), "abcdef", None),
        (PhoneStep(id="p", ask="?"), "0048 601 234 567", "48601234567"),
        (PhoneStep(id="p", ask="?"), "70120", None),
        (PhoneStep(id="p", ask="?"), "1234567890123456", None),
        (PhoneStep(id="p", ask="?"), "601 234 56a", None),
        (EmailStep(id="e", ask="?"), "ola@poczta.onet.PL.", "ola@poczta.onet.pl"),
        (EmailStep(id="e", ask="?"), "ola@localhost", None),
        (EmailStep(id="e", ask="?"), "ola @x.pl", None),
        (EmailStep(id="e", ask="?"), "a@b@c.pl", None),
    ],
)
def test_each_answer_type_keeps_a_normalised_answer_or_refuses(
    step: Any, text: str, kept: str | None
) -> None:
    assert step.parse(text) == kept


STEPS = [
    IntegerStep(id="n", ask="?", min=-5, max=500),
    ChoiceStep(id="c", ask="?", choices={"TAK": ["T", "chętnie"], "NIE WIEM": ["NW"]}),
    TextStep(id="t", ask="?", max_length=20),
    PhoneStep(id="p", ask="?"),
    EmailStep(id="e", ask="?"),
]


@given(st.sampled_from(STEPS), st.text(max_size=60))
def test_any_reply_is_refused_or_kept_in_a_form_that_reads_back_the_same(step: Any, text: str) -> None:
    kept = step.parse(text)
    assert kept is None or step.parse(kept) == kept


def _error(tmp_path: Path, body: str) -> str:
    with pytest.raises(FlowFileError) as err:
        load_dir(write_flows(tmp_path / "flows", opinia=body))
    return str(err.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('on_keyword = "abort"', 'on_keyword = "refuse"'), None),  # busy is there: fine
        (('busy = "Najpierw', 'x = "'), "opinia.toml: replies.x: unknown field"),
        (("max = 10", "max = 0"), "survey.steps[0].min: 1 is greater than max = 0"),
        (('id = "again"', 'id = "rating"'), "survey.steps[1].id: 'rating' is used by an earlier step"),
        (('"chętnie"', '"ankieta"'), "survey.steps[1].choices: ANKIETA is also a keyword of this survey"),
        (('"chętnie"', '"nie"'), "survey.steps[1].choices.NIE: alias 'NIE' is already used by TAK"),
        (("max_length = 40", "maximum = 40"), "survey.steps[2].maximum: unknown field"),
        (('type = "text"', 'type = "essay"'), "survey.steps[2]"),
        (("Co poprawić?", "{{ answers.nope }}"), "replies.ask.comment"),
    ],
)
def test_survey_file_errors_name_the_field(
    tmp_path: Path, change: tuple[str, str], expected: str | None
) -> None:
    body = survey_flow().replace(*change)
    if expected is None:
        assert isinstance(
            load_dir(write_flows(tmp_path / "flows", opinia=body)).flows["opinia"].definition, SurveyFlow
        )
    else:
        assert expected in _error(tmp_path, body)


def test_refuse_without_a_busy_reply_is_an_error(tmp_path: Path) -> None:
    body = survey_flow("refuse").replace('busy = "Najpierw dokończ ankietę. {{ question }}"', "")
    assert 'opinia.toml: replies.busy: on_keyword = "refuse" needs a busy reply' in _error(tmp_path, body)


def test_questions_are_measured_like_replies(tmp_path: Path) -> None:
    body = CONTACT.replace("Podaj e-mail.", "Podaj e-mail " + "ś" * 200)
    assert "replies.ask.email: with sample data this reply is" in _error(tmp_path, body)
