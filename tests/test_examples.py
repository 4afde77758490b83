"""The examples keep working: the flows shipped in flows/, the worked examples in docs/flows.md,
and the tour of the README, driven through the real service."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import pytest

from app.db.models import utcnow
from app.flows.check import check_dir, check_replies
from app.flows.kinds import kind_names
from app.flows.kinds.code import CodeFlow, luhn_valid, normalise_code
from app.flows.loader import LoadedFlow, load_dir, parse_flow
from tests.conftest import Service, make_settings, running, send_mo

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
FLOWS_DOC = ROOT / "docs" / "flows.md"
NUMBER = "70120"
LUHN36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHIPPED_HEADER = re.compile(r"^# (flows/[a-z0-9_-]+\.toml)$")


def _shipped() -> dict[str, LoadedFlow]:
    return load_dir(FLOWS).flows


def _toml_blocks() -> list[tuple[int, str]]:
    """Every fenced ```toml block of docs/flows.md, with the line it starts on."""
    blocks, lines = [], FLOWS_DOC.read_text(encoding="utf-8").splitlines()
    for start, line in enumerate(lines):
        if line.strip() == "```toml":
            end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
            blocks.append((start + 1, "\n".join(lines[start + 1 : end]) + "\n"))
    return blocks


def _example_codes() -> list[str]:
    return [line for line in (FLOWS / "codes" / "lato.txt").read_text().splitlines() if line.strip()]


def test_shipped_flows_load_together_without_errors() -> None:
    report = check_dir(FLOWS, utcnow())
    assert report.errors == []
    assert sorted(f.id for f in report.flows) == sorted(_shipped())


def test_shipped_flows_have_one_flow_of_every_kind() -> None:
    assert sorted(f.kind for f in _shipped().values()) == kind_names()


@pytest.mark.parametrize("flow_id", sorted(_shipped()))
def test_shipped_flow_is_usable_right_away_on_70120(flow_id: str) -> None:
    flow = _shipped()[flow_id]
    assert flow.definition.enabled
    assert flow.definition.is_open(utcnow()), f"{flow.path}: move its window so that it includes today"
    assert flow.numbers in ((NUMBER,), ("*",))


@pytest.mark.parametrize("flow_id", sorted(_shipped()))
def test_every_shipped_reply_renders_within_its_max_parts(flow_id: str) -> None:
    flow = _shipped()[flow_id]
    replies, errors = check_replies(flow)
    assert errors == []
    assert {r.name for r in replies} == set(flow.replies)
    assert all(r.ok and r.parts <= flow.definition.max_parts for r in replies)


def test_example_codes_are_valid_and_every_single_typo_is_not() -> None:
    flow = _shipped()["lato"].definition
    assert isinstance(flow, CodeFlow) and flow.code.source == "pattern" and flow.code.pattern is not None
    pattern, codes = flow.code.pattern, [normalise_code(c) for c in _example_codes()]
    assert len(set(codes)) == 20

    def valid(code: str) -> bool:
        return re.fullmatch(pattern, code, re.IGNORECASE) is not None and luhn_valid(code, LUHN36)

    assert all(valid(code) for code in codes)
    for code in codes:
        for i, char in enumerate(code):
            assert not any(valid(code[:i] + other + code[i + 1 :]) for other in LUHN36 if other != char)


@pytest.mark.parametrize(("line", "block"), _toml_blocks(), ids=[f"line{n}" for n, _ in _toml_blocks()])
def test_worked_example_in_flows_doc_loads(line: int, block: str, tmp_path: Path) -> None:
    shutil.copytree(FLOWS / "codes", tmp_path / "codes")
    path = tmp_path / "example.toml"
    path.write_text(block, encoding="utf-8")
    flow = parse_flow(path, block.encode())
    _, errors = check_replies(flow)
    assert errors == [], f"docs/flows.md line {line}"


def test_docs_show_every_shipped_flow_exactly_as_it_is() -> None:
    shown: dict[str, str] = {}
    for _, block in _toml_blocks():
        first, _, rest = block.partition("\n")
        if header := _SHIPPED_HEADER.match(first):
            shown[header.group(1)] = rest
    assert sorted(shown) == sorted(f"flows/{p.name}" for p in FLOWS.glob("*.toml"))
    for name, text in shown.items():
        assert text == (ROOT / name).read_text(encoding="utf-8"), f"docs/flows.md shows an old {name}"


async def _reply(svc: Service, sender: str, text: str) -> str | None:
    """Send one message now, as the phone would, and return the reply it queued (or None)."""
    before = await svc.scalar("SELECT COALESCE(MAX(id), 0) FROM outbox")
    await send_mo(svc, sender=sender, text=text, time=str(int(time.time())))
    rows = await svc.rows("SELECT text FROM outbox WHERE id > :id AND to_number = :s", id=before, s=sender)
    return rows[0][0] if rows else None


async def test_readme_tour_counts_one_vote_per_phone(database_url: str) -> None:
    async with running(make_settings(database_url, flows_dir=str(FLOWS))) as svc:
        await send_mo(svc, text="GLOS A", time=str(int(time.time())))
        outbox = (await svc.api.get("/api/outbox")).json()["items"]
        assert [(m["text"], m["flow_id"]) for m in outbox] == [
            ("Dziękujemy! Twój głos na Anna Nowak został przyjęty.", "final")
        ]
        now = str(int(time.time()))
        await asyncio.gather(*(send_mo(svc, text="GLOS B", time=now) for _ in range(20)))
        results = (await svc.api.get("/api/flows/final/results")).json()
        assert [t["votes"] for t in results["results"]["tally"]] == [1, 0, 0]
        # One repeat reply: the other 19 carry no news within the quiet interval.
        assert results["outcomes"] == {"accepted": 1, "repeat": 1, "suppressed": 19}
        assert len((await svc.api.get("/api/outbox")).json()["items"]) == 2


async def test_examples_answer_as_the_flows_doc_says(database_url: str) -> None:
    async with running(make_settings(database_url, flows_dir=str(FLOWS))) as svc:
        phone = "48600123456"
        assert "Konkurs: KOD" in (await _reply(svc, phone, "INFO") or "")
        assert await _reply(svc, phone, "głos bartek") == (
            "Dziękujemy! Twój głos na Bartek Wiśniewski został przyjęty."
        )
        assert (await _reply(svc, phone, "KOD U7JA-DG69") or "").startswith("Kod U7JADG69 przyjety!")
        assert (await _reply(svc, "48600111222", "kod u7ja dg69") or "").endswith("zostal juz wykorzystany.")
        assert "POTWIERDZAM" in (await _reply(svc, phone, "NOWOSCI") or "")
        assert await _reply(svc, phone, "potwierdzam") == "Zapisano! Wypisanie: WYPISZ."
        survey = [await _reply(svc, phone, text) for text in ("ANKIETA", "8", "tak", "Więcej muzyki")]
        assert survey[1] == "Dziękujemy za 8/10! Obejrzysz kolejny odcinek? TAK/NIE"
        assert survey[3] == "Dziękujemy za udział w ankiecie!"
        assert "Wypisano z: nowosci" in (await _reply(svc, phone, "STOP") or "")
        assert (await _reply(svc, phone, "START") or "").startswith("Znowu mozemy")
        assert (await _reply(svc, phone, "hello") or "").startswith("Nie rozpoznalismy")
        assert await _reply(svc, phone, "hello again") is None  # once an hour per phone
