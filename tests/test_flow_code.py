"""Contest codes through the real webhook: single use, per-phone limits, patterns, exact counts."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from app.db.engine import create_engine
from app.db.models import utcnow
from app.errors import FlowFileError
from app.flows.codes_import import import_codes, list_flow
from app.flows.kinds.base import Context, Inbound
from app.flows.kinds.code import is_well_formed, luhn_valid, normalise_code
from app.flows.loader import LoadedFlow, load_dir
from app.flows.matching import words
from tests.conftest import Service, empty_database, make_settings, mo_form, running, send_mo, write_flows

CONTEST = """
id = "summer"
kind = "code"
numbers = ["70120"]
keywords = ["KOD"]
starts = 2025-12-01T00:00:00+01:00
ends = 2026-01-01T00:00:00+01:00

[code]
SOURCE
per_sender = PER_SENDER

[replies]
accepted = "Kod {{ code }} przyjęty! Zgłoszeń: {{ entries }}, zostało {{ entries_left }}."
used = "{% if used_by_you %}Ten kod już od Ciebie mamy.{% else %}Kod {{ code }} był już użyty.{% endif %}"
invalid = "Kod {{ code }} jest nieprawidłowy."
limit = "Limit {{ per_sender }} zgłoszeń wyczerpany."
closed = "Konkurs zakończony."
"""
LIST = 'source = "list"\nfile = "codes/summer.txt"'
CODES = "ABC123\nabc-124\nABC 125\nDEF456\nDEF457\nDEF458\nDEF459\nDEF460\nDEF461\n"
IN_WINDOW = "1765796400"  # 2025-12-15 12:00 Warsaw
AFTER = "1767351600"  # 2026-01-02 12:00 Warsaw


def contest(source: str = LIST, per_sender: int = 2) -> str:
    return CONTEST.replace("SOURCE", source).replace("PER_SENDER", str(per_sender))


def flows_with_codes(directory: Path, body: str) -> Path:
    flows = write_flows(directory, summer=body)
    (flows / "codes").mkdir(exist_ok=True)
    (flows / "codes" / "summer.txt").write_text(CODES, encoding="utf-8")
    return flows


async def start(stack: AsyncExitStack, database_url: str, flows: Path, services: int = 1) -> list[Service]:
    """The service (``services`` of them on one database: real concurrency), codes imported."""
    settings = make_settings(database_url, flows_dir=str(flows))
    started = [await stack.enter_async_context(running(settings)) for _ in range(services)]
    flow, codes_file = list_flow(flows, "summer")
    await import_codes(started[0].engine, flow, codes_file)
    return started


@pytest.fixture
async def codes(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with AsyncExitStack() as stack:
        (svc,) = await start(stack, database_url, flows_with_codes(tmp_path / "flows", contest()))
        yield svc


async def _replies(service: Service, sender: str) -> list[str]:
    rows = await service.rows("SELECT text FROM outbox WHERE to_number = :s ORDER BY id", s=sender)
    return [r[0] for r in rows]


async def _enter(service: Service, text: str, sender: str) -> None:
    await send_mo(service, text=text, time=IN_WINDOW, sender=sender)


async def test_valid_code_is_accepted_and_answered_with_the_entries(codes: Service) -> None:
    await _enter(codes, "kod abc-123", "48600000001")
    rows = await codes.rows("SELECT code, sender, seq FROM redemptions")
    assert [tuple(r) for r in rows] == [("ABC123", "48600000001", 1)]
    assert await _replies(codes, "48600000001") == ["Kod ABC123 przyjęty! Zgłoszeń: 1, zostało 1."]
    event = await codes.scalar("SELECT outcome FROM flow_events WHERE flow_id = 'summer'")
    assert event == "accepted"


@pytest.mark.parametrize("text", ["KOD ABC124", "kod: abc 124", "Kod ABC-124.", "KOD a-b-c-1-2-4"])
async def test_code_is_matched_whatever_its_case_spaces_and_dashes(codes: Service, text: str) -> None:
    await _enter(codes, text, "48600000002")
    assert await codes.scalar("SELECT code FROM redemptions") == "ABC124"


async def test_code_used_by_another_phone_gets_the_used_reply(codes: Service) -> None:
    await _enter(codes, "KOD ABC123", "48600000003")
    await _enter(codes, "KOD ABC123", "48600000004")
    await _enter(codes, "KOD ABC123", "48600000003")
    assert await codes.scalar("SELECT count(*) FROM redemptions") == 1
    assert await _replies(codes, "48600000004") == ["Kod ABC123 był już użyty."]
    assert (await _replies(codes, "48600000003"))[-1] == "Ten kod już od Ciebie mamy."


@pytest.mark.parametrize("text", ["KOD ZZZ999", "KOD", "KOD ABC$123", "KOD " + "A" * 65])
async def test_unknown_or_malformed_code_is_invalid_and_not_entered(codes: Service, text: str) -> None:
    await _enter(codes, text, "48600000005")
    assert await codes.scalar("SELECT count(*) FROM redemptions") == 0
    (reply,) = await _replies(codes, "48600000005")
    assert reply.endswith("jest nieprawidłowy.")


async def test_phone_at_its_limit_gets_the_limit_reply_and_the_code_stays_unused(codes: Service) -> None:
    for code in ["DEF456", "DEF457", "DEF458"]:
        await _enter(codes, f"KOD {code}", "48600000006")
    assert await _replies(codes, "48600000006") == [
        "Kod DEF456 przyjęty! Zgłoszeń: 1, zostało 1.",
        "Kod DEF457 przyjęty! Zgłoszeń: 2, zostało 0.",
        "Limit 2 zgłoszeń wyczerpany.",
    ]
    await _enter(codes, "KOD DEF458", "48600000007")
    rows = await codes.rows("SELECT code, sender FROM redemptions WHERE code = 'DEF458'")
    assert [tuple(r) for r in rows] == [("DEF458", "48600000007")]


async def test_code_after_the_window_gets_the_closed_reply(codes: Service) -> None:
    await send_mo(codes, text="KOD ABC123", time=AFTER, sender="48600000008")
    assert await codes.scalar("SELECT count(*) FROM redemptions") == 0
    assert await _replies(codes, "48600000008") == ["Konkurs zakończony."]


async def test_redelivered_message_is_counted_once(codes: Service) -> None:
    form = mo_form(text="KOD ABC123", time=IN_WINDOW)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            assert (await client.post(codes.mo_url, data=form)).status_code == 200
    assert await codes.scalar("SELECT count(*) FROM redemptions") == 1
    assert await codes.scalar("SELECT count(*) FROM outbox") == 1


async def _post_all(services: list[Service], forms: list[dict[str, str]]) -> None:
    """Deliver at once, spread over every service, so writers race on the database."""
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=40), timeout=60) as client:
        sends = [client.post(services[i % len(services)].mo_url, data=f) for i, f in enumerate(forms)]
        answers = await asyncio.gather(*sends)
    assert all(r.status_code == 200 for r in answers)


async def _outcomes(service: Service) -> Counter[str]:
    rows = await service.rows("SELECT outcome FROM flow_events WHERE flow_id = 'summer'")
    return Counter(r[0] for r in rows)


async def test_same_code_from_many_phones_at_once_is_redeemed_once(database_url: str, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        services = await start(stack, database_url, flows_with_codes(tmp_path / "f", contest()), services=2)
        forms = [mo_form(text="KOD DEF456", time=IN_WINDOW, sender=f"4860020{i:04d}") for i in range(30)]
        await _post_all(services, forms)
        assert await services[0].scalar("SELECT count(*) FROM redemptions") == 1
        assert await _outcomes(services[0]) == {"accepted": 1, "used": 29}


async def test_different_codes_from_one_phone_at_once_stop_at_per_sender(
    database_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        services = await start(stack, database_url, flows_with_codes(tmp_path / "f", contest()), services=2)
        codes = ["DEF456", "DEF457", "DEF458", "DEF459", "DEF460", "DEF461"]
        forms = [mo_form(text=f"KOD {c}", time=IN_WINDOW, sender="48600999999") for c in codes]
        await _post_all(services, forms)
        seqs = await services[0].rows("SELECT seq FROM redemptions ORDER BY seq")
        assert [r[0] for r in seqs] == [1, 2]
        assert await _outcomes(services[0]) == {"accepted": 2, "limit": 4}


def _enter_directly(conn: Connection, flow: LoadedFlow, inbound_id: int, sender: str, code: str) -> str:
    text = f"KOD {code}"
    msg = Inbound(inbound_id, f"sms{inbound_id}", "70120", sender, text, int(IN_WINDOW), None)
    ctx = Context(conn=conn, msg=msg, flow_hash=flow.hash, words=words(text), keyword="KOD", now=utcnow())
    return flow.definition.handle(ctx).name


@pytest.mark.parametrize(
    ("other", "code", "expected", "rows"),
    [("48600000001", "DEF457", "accepted", [1, 2]), ("48600000002", "DEF456", "used", [1])],
)
@pytest.mark.postgres
async def test_entry_racing_an_uncommitted_one_waits_and_then_decides_on_what_committed(
    pg_database: str, tmp_path: Path, other: str, code: str, expected: str, rows: list[int]
) -> None:
    # PostgreSQL only: SQLite runs one writing transaction at a time, so there is no race to lose.
    await empty_database(pg_database)
    database_url = pg_database
    flows = flows_with_codes(tmp_path / "flows", contest())
    flow = load_dir(flows).flows["summer"]
    engine = create_engine(make_settings(database_url))
    try:
        await import_codes(engine, *list_flow(flows, "summer"))
        async with engine.connect() as first, engine.connect() as second:
            assert await first.run_sync(_enter_directly, flow, 1, "48600000001", "DEF456") == "accepted"
            racing = asyncio.create_task(second.run_sync(_enter_directly, flow, 2, other, code))
            await asyncio.sleep(0.3)
            assert not racing.done()  # held by the unique key until the first commits
            await first.commit()
            assert await racing == expected
            await second.commit()
        async with engine.connect() as conn:
            seqs = (await conn.execute(text("SELECT seq FROM redemptions ORDER BY id"))).scalars().all()
        assert list(seqs) == rows
    finally:
        await engine.dispose()


PATTERN = 'source = "pattern"\npattern = "^[0-9]{11}$"\nchecksum = "luhn"'


async def test_pattern_source_accepts_codes_that_fit_and_pass_the_checksum(
    database_url: str, tmp_path: Path
) -> None:
    every_time = contest(PATTERN, per_sender=5).replace(
        'keywords = ["KOD"]', 'keywords = ["KOD"]\nquiet_minutes = 0'
    )
    flows = write_flows(tmp_path / "flows", summer=every_time)
    async with running(make_settings(database_url, flows_dir=str(flows))) as svc:
        for text in ["KOD 7992-7398-713", "KOD 79927398710", "KOD 1234", "KOD 7992739871X"]:
            await _enter(svc, text, "48600000009")
        await _enter(svc, "KOD 79927398713", "48600000010")
        assert [r[0] for r in await svc.rows("SELECT code FROM redemptions")] == ["79927398713"]
        assert await _outcomes(svc) == {"accepted": 1, "invalid": 3, "used": 1}


async def test_results_count_redemptions_participants_and_imported_codes(codes: Service) -> None:
    for code, sender in [("ABC123", "48600000011"), ("ABC124", "48600000011"), ("ABC125", "48600000012")]:
        await _enter(codes, f"KOD {code}", sender)
    await _enter(codes, "KOD NOPE", "48600000012")
    resp = await codes.api.get("/api/flows/summer/results")
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == {
        "redemptions": 3,
        "participants": 2,
        "codes_imported": 9,
        "codes_left": 6,
        "top_entrants": [
            {"sender": "48600000011", "entries": 2},
            {"sender": "48600000012", "entries": 1},
        ],
    }


def test_missing_codes_file_is_a_flow_file_error_naming_the_path(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", summer=contest())
    with pytest.raises(FlowFileError) as err:
        load_dir(flows)
    message = str(err.value)
    assert f"{flows / 'summer.toml'}: code.file:" in message
    assert str(flows / "codes" / "summer.txt") in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('source = "list"', "code.file: a list of codes needs its file"),
        ('source = "list"\nfile = "codes/summer.txt"\npattern = "X"', "code.source: pattern and checksum"),
        ('source = "list"\nfile = "codes/summer.txt"\ncolumn = "kod"', "code.column: only a CSV file"),
        ('source = "pattern"', "code.pattern: a pattern source needs one"),
        ('source = "pattern"\npattern = "[A-Z"', "code.pattern: not a valid regular expression"),
        ('source = "pattern"\npattern = "X"\nfile = "a.txt"', "code.source: file and column belong"),
        ('source = "pattern"\npattern = "X"\nchecksum = "crc"', "code.checksum:"),
    ],
)
def test_code_section_mistakes_are_flow_file_errors(tmp_path: Path, source: str, expected: str) -> None:
    flows = flows_with_codes(tmp_path / "flows", contest(source))
    with pytest.raises(FlowFileError, match=expected.replace("(", r"\(")):
        load_dir(flows)


@given(st.text(alphabet="abcXYZ019 -–", max_size=20))
def test_normalising_a_code_twice_changes_nothing(text: str) -> None:
    once = normalise_code(text)
    assert normalise_code(once) == once
    assert " " not in once and "-" not in once and once == once.upper()


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@given(st.text(alphabet=ALNUM, min_size=2, max_size=12), st.data())
def test_luhn36_catches_every_single_mistyped_character(body: str, data: st.DataObject) -> None:
    code = next(body + c for c in ALNUM if luhn_valid(body + c, ALNUM))
    position = data.draw(st.integers(0, len(code) - 1))
    typo = data.draw(st.sampled_from(ALNUM).filter(lambda c: c != code[position]))
    assert is_well_formed(code)
    assert not luhn_valid(code[:position] + typo + code[position + 1 :], ALNUM)
