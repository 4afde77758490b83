"""A flow page per kind: what each counts, numbers masked for viewers, and empty pages that teach."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from app.db.models import utcnow
from app.flows.loader import find_flow
from app.reads.results import SurveyResults, kind_results
from tests.conftest import send_mo, write_flows
from tests.dashboard import dashboard_service, insert, signed_in
from tests.test_dashboard_pages import VOTE

FLOWS_DIR = Path(__file__).parents[1] / "flows"

CODE = """
id = "lato"
kind = "code"
name = "Lato z kodem"
numbers = ["70120"]
keywords = ["KOD"]

[code]
source = "pattern"
pattern = "^[A-Z0-9]{8}$"
per_sender = 3

[replies]
accepted = "Kod {{ code }} przyjęty!"
used = "Kod {{ code }} został już wykorzystany."
invalid = "Nie rozpoznajemy kodu {{ code }}."
limit = "To limit na jeden numer."
"""


def _example(name: str) -> str:
    return (FLOWS_DIR / f"{name}.toml").read_text(encoding="utf-8")


def _all_kinds(tmp_path: Path) -> Path:
    return write_flows(
        tmp_path / "flows",
        lato=CODE,
        nowosci=_example("nowosci"),
        ankieta=_example("ankieta"),
        wizyty=_example("wizyty"),
        info=_example("info"),
        inne=_example("inne"),
    )


async def _mo(svc: object, text: str, sender: str) -> None:
    await send_mo(svc, text=text, sender=sender, time=str(int(time.time())))  # type: ignore[arg-type]


async def test_empty_flow_pages_say_how_to_send_the_first_message(database_url: str, tmp_path: Path) -> None:
    flows = _all_kinds(tmp_path)
    async with (
        dashboard_service(database_url, flows_dir=str(flows)) as svc,
        signed_in(svc, "vera", "viewer") as client,
    ):
        for flow, example in (
            ("lato", "KOD"),
            ("nowosci", "NOWOSCI"),
            ("ankieta", "ANKIETA"),
            ("info", "INFO"),
        ):
            page = await client.get(f"/flows/{flow}")
            assert page.status_code == 200, flow
            assert f"Nothing here yet. Send {example}" in page.text, flow
            assert 'href="/simulator"' in page.text, flow
        reply = await client.get("/flows/wizyty")
        assert "No message with the tag visit has been sent yet" in reply.text
        assert "--tag visit" in reply.text and 'href="/simulator"' in reply.text


async def test_code_page_counts_redemptions_top_senders_and_rejections(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        for code in ("AAAA1111", "AAAA2222", "AAAA3333"):
            await _mo(svc, f"KOD {code}", "48600123456")
        await _mo(svc, "KOD BBBB1111", "48600777888")
        await _mo(svc, "KOD AAAA1111", "48600777888")  # used
        await _mo(svc, "KOD zly", "48600777888")  # invalid
        async with signed_in(svc, "vera", "viewer") as client:
            page = await client.get("/flows/lato")
            text = page.text
            assert 'Codes redeemed</span><span class="big">4<' in text
            assert 'Participants</span><span class="big">2<' in text
            assert "48600***456" in text and "48600123456" not in text  # masked for a viewer
            assert "Rejected codes by reason" in text
            assert "used</text>" in text and "invalid</text>" in text
            assert "1 · 50.0%" in text  # each reason with its share
            assert "Codes redeemed per hour, last 7 days" in text and "<polyline" in text
            assert "Nothing here yet" not in text
        async with signed_in(svc, "otto", "operator") as client:
            page = await client.get("/flows/lato")
            assert "48600123456" in page.text and "48600***456" not in page.text  # whole for an operator


async def test_subscription_page_shows_members_and_joins_and_leaves_over_time(
    database_url: str, tmp_path: Path
) -> None:
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        for sender in ("48600000001", "48600000002", "48600000003"):
            await _mo(svc, "NOWOSCI", sender)
            await _mo(svc, "POTWIERDZAM", sender)
        await _mo(svc, "NOWOSCI", "48600000004")  # pending: not confirmed
        await _mo(svc, "WYPISZ", "48600000003")
        async with signed_in(svc, "vera", "viewer") as client:
            text = (await client.get("/flows/nowosci")).text
            assert 'active</span><span class="big">2<' in text
            assert 'pending</span><span class="big">1<' in text
            assert 'left</span><span class="big">1<' in text
            assert "48600***001" in text and "48600***002" in text and "48600***003" not in text
            assert "Joins and leaves of the list per hour" in text
            assert "joins: 3" in text and "leaves: 1" in text  # the legend carries the sums


async def test_a_lists_members_come_a_page_at_a_time_longest_first(database_url: str, tmp_path: Path) -> None:
    base = utcnow().replace(microsecond=0) - timedelta(days=3)
    # Seven members join in each second, the latest numbers first: pages break inside a second.
    joined = {f"486000{i:05d}": base + timedelta(seconds=(119 - i) // 7) for i in range(120)}
    row = {"list_id": "nowosci", "flow_id": "nowosci", "flow_hash": "x", "requested_at": base}
    rows = [row | {"phone": p, "status": "active", "confirmed_at": at} for p, at in joined.items()]
    rows += [row | {"phone": "48601000001", "status": "pending", "confirmed_at": None}]
    rows += [row | {"phone": "48601000002", "status": "left", "confirmed_at": base}]
    rows += [row | {"phone": "48601000003", "status": "active", "confirmed_at": base}]
    expected = sorted(joined, key=lambda p: (joined[p], p))

    def shown(html: str) -> list[str]:
        return re.findall(r'<tr><td class="nowrap">(\d+)</td>', html)

    def link(html: str, name: str) -> str | None:
        found = re.search(rf'href="/flows/nowosci\?{name}=([^"]+)"', html)
        return found.group(1) if found else None

    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await insert(svc, "subscriptions", rows)
        await insert(svc, "contacts", [{"phone": "48601000003", "first_seen": base, "last_seen": base,
                                        "messages": 1, "opted_out_at": base}])  # fmt: skip
        async with signed_in(svc, "olek", "operator") as client:
            first = (await client.get("/flows/nowosci")).text
            assert "120 reachable member(s)" in first
            assert shown(first) == expected[:50] and link(first, "earlier") is None
            later = link(first, "later")
            assert later is not None and re.fullmatch(r"\d+\.\d+", later)  # a position, no number
            second = (await client.get(f"/flows/nowosci?later={later}")).text
            assert shown(second) == expected[50:100]
            third = (await client.get(f"/flows/nowosci?later={link(second, 'later')}")).text
            assert shown(third) == expected[100:] and link(third, "later") is None
            back = (await client.get(f"/flows/nowosci?earlier={link(third, 'earlier')}")).text
            assert shown(back) == expected[50:100] and link(back, "later") == link(second, "later")
            start = (await client.get(f"/flows/nowosci?earlier={link(back, 'earlier')}")).text
            assert shown(start) == expected[:50] and link(start, "earlier") is None
            wrong = await client.get("/flows/nowosci?later=yesterday")
            assert wrong.status_code == 400 and "is not a position in a member list" in wrong.text
        async with signed_in(svc, "vera", "viewer") as viewer:
            masked = (await viewer.get("/flows/nowosci")).text
            assert f"{expected[0][:5]}***{expected[0][-3:]}" in masked and expected[0] not in masked


async def test_survey_page_shows_the_funnel_and_each_steps_answers(database_url: str, tmp_path: Path) -> None:
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        for sender, score, again in (("48600000001", "9", "TAK"), ("48600000002", "7", "NIE")):
            await _mo(svc, "ANKIETA", sender)
            await _mo(svc, score, sender)
            await _mo(svc, again, sender)
        await _mo(svc, "Więcej <b>muzyki</b>", "48600000001")
        await _mo(svc, "ANKIETA", "48600000003")
        async with signed_in(svc, "vera", "viewer") as client:
            text = (await client.get("/flows/ankieta")).text
            assert "Completion: people who started and reached each step" in text
            assert "started</text>" in text and "3 · 100.0%" in text
            assert "answered ocena</text>" in text and "2 · 66.7%" in text
            assert "completed</text>" in text and "1 · 33.3%" in text
            assert "TAK</text>" in text and "1 · 50.0%" in text  # the choice step's distribution
            assert "Więcej &lt;b&gt;muzyki&lt;/b&gt;" in text  # a text answer, as text


async def test_autoreply_and_fallback_pages_count_hits_per_hour(database_url: str, tmp_path: Path) -> None:
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await _mo(svc, "INFO", "48600000001")
        await _mo(svc, "POMOC", "48600000002")
        await _mo(svc, "co to jest", "48600000003")
        async with signed_in(svc, "vera", "viewer") as client:
            info = (await client.get("/flows/info")).text
            assert 'Messages answered</span><span class="big">2<' in info
            assert "Messages answered per hour, last 7 days" in info and "hits: 2" in info
            fallback = (await client.get("/flows/inne")).text
            assert 'Messages answered</span><span class="big">1<' in fallback and "hits: 1" in fallback


async def test_latest_votes_show_numbers_whole_to_operators_only(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        await _mo(svc, "GLOS A", "48600123456")
        async with signed_in(svc, "vera", "viewer") as client:
            page = (await client.get("/flows/final")).text
            assert "48600***456" in page and "48600123456" not in page
        async with signed_in(svc, "otto", "operator") as client:
            page = (await client.get("/flows/final")).text
            assert "48600123456" in page and "48600***456" not in page


def _answer(n: int, step: str, value: str, flow: str = "ankieta") -> dict[str, object]:
    return {"conversation_id": n, "flow_id": flow, "sender": f"48600{n:06d}", "step": step,
            "value": value, "inbound_id": n, "created_at": utcnow()}  # fmt: skip


async def test_survey_page_shows_the_latest_ten_text_answers_and_counts_them_all(
    database_url: str, tmp_path: Path
) -> None:
    rows = [_answer(n, "uwagi", f"uwaga numer {n}") for n in range(1, 26)]
    rows += [_answer(n, "ocena", "8") for n in range(1, 26)]  # another step of the same survey
    rows += [_answer(100 + n, "uwagi", f"inna ankieta {n}", flow="inna") for n in range(30)]
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await insert(svc, "survey_answers", rows)
        async with signed_in(svc, "vera", "viewer") as client:
            text = (await client.get("/flows/ankieta")).text
        shown = re.findall(r'<li class="wrap">([^<]*)</li>', text)
        assert shown == [f"uwaga numer {n}" for n in range(25, 15, -1)]  # the latest ten, newest first
        assert 'uwagi</code> <small class="muted">text · 25 answers' in text
        assert "The latest 10; the export has them all." in text
        # The page's read takes the ten from the database, not all of them to drop the rest.
        survey = find_flow(tmp_path / "flows", "ankieta").definition
        async with svc.engine.connect() as conn:
            read = await conn.run_sync(lambda c: kind_results(c, survey, latest=10))
        assert isinstance(read, SurveyResults)
        (step,) = [s for s in read.steps if s.id == "uwagi"]
        assert step.answered == 25 and step.answers == [f"uwaga numer {n}" for n in range(16, 26)]
        results = (await svc.api.get("/api/flows/ankieta/results")).json()["results"]
        (uwagi,) = [s for s in results["steps"] if s["id"] == "uwagi"]
        assert uwagi["answers"] == [f"uwaga numer {n}" for n in range(1, 26)]  # the API keeps them all


async def test_survey_page_shows_every_answer_when_ten_or_fewer(database_url: str, tmp_path: Path) -> None:
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await insert(svc, "survey_answers", [_answer(n, "uwagi", f"uwaga {n}") for n in range(1, 11)])
        async with signed_in(svc, "vera", "viewer") as client:
            text = (await client.get("/flows/ankieta")).text
        assert re.findall(r'<li class="wrap">([^<]*)</li>', text) == [f"uwaga {n}" for n in range(10, 0, -1)]
        assert "text · 10 answers" in text and "The latest 10" not in text


async def test_code_page_top_ten_are_the_phones_with_most_entries_ties_by_phone(
    database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    entries = {f"486{rng.randrange(10**8):08d}": rng.choice((1, 1, 1, 2, 2, 3)) for _ in range(40)}
    rows, n = [], 0
    for sender, count in entries.items():
        for seq in range(1, count + 1):
            n += 1
            rows.append({"flow_id": "lato", "flow_hash": "x", "code": f"C{n:07d}", "sender": sender,
                         "seq": seq, "inbound_id": n, "created_at": utcnow()})  # fmt: skip
    # Another contest's entries, more of them per phone, count for it alone.
    rows += [{"flow_id": "inny", "flow_hash": "x", "code": f"D{k}", "sender": "48699999999", "seq": k,
              "inbound_id": 1000 + k, "created_at": utcnow()} for k in range(1, 6)]  # fmt: skip
    rng.shuffle(rows)  # stored in no particular order
    # The reference: every entry grouped by phone, most entries first, ties by phone.
    expected = sorted(Counter(entries).items(), key=lambda e: (-e[1], e[0]))[:10]
    async with dashboard_service(database_url, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await insert(svc, "redemptions", rows)
        results = (await svc.api.get("/api/flows/lato/results")).json()["results"]
        assert [(e["sender"], e["entries"]) for e in results["top_entrants"]] == expected
        assert results["participants"] == len(entries)
        assert results["redemptions"] == sum(entries.values())
        async with signed_in(svc, "otto", "operator") as client:
            text = (await client.get("/flows/lato")).text
        top = re.findall(r'<tr><td class="nowrap">(\d+)</td><td>(\d+)</td></tr>', text)
        assert [(s, int(c)) for s, c in top] == expected
