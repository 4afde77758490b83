"""Subscriptions and the global STOP through the real webhook: join, leave, double opt-in judged by
message time, STOP and START, and one row per phone whatever arrives at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from app.errors import FlowFileError
from app.flows.kinds.subscription import subscribers
from app.flows.loader import load_dir
from app.reads.results import kind_results
from tests.conftest import Service, make_settings, mo_form, running, send_mo, write_flows

NEWS = """
id = "news"
kind = "subscription"
numbers = ["70120"]
keywords = ["NEWS"]
WINDOW

[subscription]
list = "news"
leave_keywords = ["STOPNEWS"]

[replies]
joined = "Zapisano Cię na {{ list }}. Wypisanie: {{ leave_keyword }}."
already_member = "Już jesteś na liście {{ list }}."
left = "Wypisano Cię z {{ list }}."
not_member = "Nie ma Cię na liście {{ list }}."
closed = "Zapisy na {{ list }} są zamknięte."
opted_out = "Wysłałeś STOP. Wyślij START, a potem {{ join_keyword }}."
"""
DAILY = """
id = "daily"
kind = "subscription"
numbers = ["70120"]
keywords = ["DZIEN"]

[subscription]
leave_keywords = ["STOPDZIEN"]
confirm = true
confirm_keyword = "TAK"
confirm_within_minutes = 60

[replies]
joined = "Zapisano."
confirm_request = "Odpowiedz {{ confirm_keyword }} w ciągu {{ confirm_within_minutes }} min."
confirmed = "Potwierdzono zapis na {{ list }}."
confirm_expired = "Minął czas na potwierdzenie. Wyślij {{ join_keyword }} jeszcze raz."
already_member = "Już jesteś na liście."
not_member = "Nie masz zapisu do potwierdzenia."
left = "Wypisano."
"""
OPTOUT = """
id = "stop"
kind = "optout"
keywords = ["STOP", "NIE"]

[optout]
start_keywords = ["START"]

[replies]
opted_out = "Wypisano Cię ze wszystkich list. Aby wrócić, wyślij {{ start_keyword }}."
opted_in = "Znowu możemy do Ciebie pisać. Zapisz się na listę jej słowem."
"""
SURVEY = """
id = "quiz"
kind = "survey"
numbers = ["70120"]
keywords = ["ANKIETA"]

[survey]
on_keyword = "refuse"

[[survey.steps]]
id = "rating"
type = "integer"
ask = "Jak oceniasz program?"

[replies]
done = "Dziękujemy!"
busy = "Najpierw dokończ ankietę."
"""
T = 1764540000  # 2025-11-30 23:00 Warsaw
PHONE = "48600000001"


def at(minutes: int) -> str:
    return str(T + minutes * 60)


def flows_folder(directory: Path, news_window: str = "") -> Path:
    return write_flows(directory, news=NEWS.replace("WINDOW", news_window), daily=DAILY, stop=OPTOUT)


@pytest.fixture
async def svc(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with running(make_settings(database_url, flows_dir=str(flows_folder(tmp_path / "flows")))) as s:
        yield s


async def say(service: Service, text: str, minutes: int = 0, sender: str = PHONE) -> str:
    """Send one MO and return the reply it got."""
    form = await send_mo(service, text=text, sender=sender, time=at(minutes))
    rows = await service.rows(
        "SELECT o.text FROM outbox o JOIN inbound_messages i ON o.inbound_id = i.id WHERE i.sms_id = :s",
        s=form["sms_id"],
    )
    return str(rows[0][0]) if rows else ""


async def status(service: Service, list_id: str, phone: str = PHONE) -> str | None:
    return await service.scalar(
        "SELECT status FROM subscriptions WHERE list_id = :l AND phone = :p", l=list_id, p=phone
    )


def plain(results: Any) -> Any:
    """A kind's results as mappings and lists, times kept as times."""
    return msgspec.to_builtins(results, builtin_types=(datetime,))


async def run(service: Service, fn: Any) -> Any:
    async with service.engine.connect() as conn:
        return await conn.run_sync(fn)


async def test_join_makes_an_active_subscription_and_answers_joined(svc: Service) -> None:
    assert await say(svc, "news") == "Zapisano Cię na news. Wypisanie: STOPNEWS."
    assert await status(svc, "news") == "active"
    row = await svc.rows("SELECT flow_id, confirmed_at IS NOT NULL FROM subscriptions")
    assert tuple(row[0]) == ("news", True)


async def test_second_join_is_already_member_and_keeps_one_row(svc: Service) -> None:
    await say(svc, "NEWS")
    assert await say(svc, "News!") == "Już jesteś na liście news."
    assert await svc.scalar("SELECT count(*) FROM subscriptions") == 1


async def test_leave_marks_left_and_a_second_leave_is_not_member(svc: Service) -> None:
    await say(svc, "NEWS")
    assert await say(svc, "STOPNEWS", 5) == "Wypisano Cię z news."
    assert await status(svc, "news") == "left"
    assert await say(svc, "stopnews", 6) == "Nie ma Cię na liście news."
    assert await say(svc, "STOPNEWS", sender="48600000002") == "Nie ma Cię na liście news."
    assert await say(svc, "NEWS", 7) == "Zapisano Cię na news. Wypisanie: STOPNEWS."
    assert await status(svc, "news") == "active"


async def test_double_opt_in_is_pending_until_confirmed_within_the_window(svc: Service) -> None:
    assert await say(svc, "DZIEN") == "Odpowiedz TAK w ciągu 60 min."
    assert await status(svc, "daily") == "pending"
    assert await say(svc, "tak", 59) == "Potwierdzono zapis na daily."
    assert await status(svc, "daily") == "active"
    assert await say(svc, "TAK", 61) == "Już jesteś na liście."


async def test_confirmation_after_the_window_is_refused_by_message_time(svc: Service) -> None:
    await say(svc, "DZIEN")
    assert await say(svc, "TAK", 61) == "Minął czas na potwierdzenie. Wyślij DZIEN jeszcze raz."
    assert await status(svc, "daily") == "pending"
    # Asking again opens a new window from the new message's time.
    assert await say(svc, "DZIEN", 70) == "Odpowiedz TAK w ciągu 60 min."
    assert await say(svc, "TAK", 100) == "Potwierdzono zapis na daily."


async def test_confirm_keyword_without_a_pending_join_is_not_member(svc: Service) -> None:
    assert await say(svc, "TAK") == "Nie masz zapisu do potwierdzenia."
    assert await svc.scalar("SELECT outcome FROM flow_events") == "nothing_to_confirm"


async def test_leaving_works_outside_the_window_but_joining_is_closed(
    database_url: str, tmp_path: Path
) -> None:
    window = "starts = 2025-11-30T00:00:00+01:00\nends = 2025-11-30T23:30:00+01:00"
    flows = flows_folder(tmp_path / "flows", news_window=window)
    async with running(make_settings(database_url, flows_dir=str(flows))) as s:
        await say(s, "NEWS")
        assert await say(s, "STOPNEWS", 60) == "Wypisano Cię z news."
        assert await say(s, "NEWS", 61) == "Zapisy na news są zamknięte."
        assert await status(s, "news") == "left"


async def test_concurrent_duplicate_joins_make_one_row_and_one_joined_reply(svc: Service) -> None:
    forms = [mo_form(text="NEWS", sender=PHONE, time=at(0)) for _ in range(20)]
    others = [mo_form(text="NEWS", sender=f"4860010{i:04d}", time=at(0)) for i in range(30)]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=25), timeout=60) as client:
        answers = await asyncio.gather(*(client.post(svc.mo_url, data=f) for f in forms + others + forms[:5]))
    assert all(r.status_code == 200 for r in answers)
    assert await svc.scalar("SELECT count(*) FROM subscriptions WHERE phone = :p", p=PHONE) == 1
    assert await svc.scalar("SELECT count(*) FROM subscriptions") == 31
    replies = [r[0] for r in await svc.rows("SELECT text FROM outbox WHERE to_number = :p", p=PHONE)]
    assert sorted(set(replies)) == [
        "Już jesteś na liście news.",
        "Zapisano Cię na news. Wypisanie: STOPNEWS.",
    ]
    # One "already" reply: the other 19 carry no news within the quiet interval and are suppressed.
    assert replies.count("Zapisano Cię na news. Wypisanie: STOPNEWS.") == 1 and len(replies) == 2
    held = await svc.scalar(
        "SELECT count(*) FROM flow_events WHERE sender = :p AND outcome = 'suppressed'", p=PHONE
    )
    assert held == 18  # the last five forms are resent duplicates: stored once


async def test_results_and_subscribers_list_active_phones_not_under_stop(
    svc: Service, tmp_path: Path
) -> None:
    for i, phone in enumerate(["48600000003", "48600000002", "48600000004", "48600000005"]):
        await say(svc, "NEWS", i, sender=phone)
    await say(svc, "STOPNEWS", 10, sender="48600000004")
    await say(svc, "DZIEN", 10, sender="48600000006")
    # Marked opted out elsewhere than by STOP: broadcasts must still skip the phone.
    async with svc.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE contacts SET opted_out_at = last_seen WHERE phone = '48600000005'")
    definitions = load_dir(tmp_path / "flows")
    news = definitions.flows["news"].definition
    results = await run(svc, lambda c: plain(kind_results(c, news)))
    assert results["counts"] == {"pending": 0, "active": 3, "left": 1}
    assert [s["phone"] for s in results["subscribers"]] == ["48600000003", "48600000002"]
    assert results["subscribers"][0]["since"].timestamp() == T
    assert await run(svc, lambda c: subscribers(c, "news")) == ["48600000002", "48600000003"]
    daily = await run(svc, lambda c: plain(kind_results(c, definitions.flows["daily"].definition)))
    assert daily["counts"] == {"pending": 1, "active": 0, "left": 0} and daily["subscribers"] == []
    await say(svc, "STOP", 11, sender="48600000002")
    stop = definitions.flows["stop"].definition
    assert await run(svc, lambda c: plain(kind_results(c, stop))) == {"opted_out": 2}


def load_error(tmp_path: Path, **files: str) -> str:
    with pytest.raises(FlowFileError) as err:
        load_dir(write_flows(tmp_path / "bad", **files))
    return str(err.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (DAILY.replace('confirm_keyword = "TAK"\n', ""), "daily.toml: subscription.confirm_keyword:"),
        (DAILY.replace('"STOPDZIEN"', '"DZIEN"'), "subscription.leave_keywords: DZIEN is also in keywords"),
        (DAILY.replace('leave_keywords = ["STOPDZIEN"]', "leave_keywords = []"), "leave_keywords:"),
        (DAILY.replace("confirm_request = ", "# "), "replies.confirm_request: confirm = true needs"),
        (
            OPTOUT.replace('kind = "optout"', 'kind = "optout"\nends = 2026-01-01T00:00:00'),
            "starts: STOP must",
        ),
        (OPTOUT.replace('["START"]', '["NIE"]'), "optout.start_keywords: NIE is also a STOP keyword"),
    ],
)
def test_flow_file_mistakes_are_reported_with_their_path(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in load_error(tmp_path, daily=body)
