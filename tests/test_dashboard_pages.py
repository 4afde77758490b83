"""The overview and the flow pages: what they count, the live tally, and SMS text shown as text."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx

from tests.conftest import send_mo, write_flows
from tests.dashboard import dashboard_service, signed_in

VOTE = """
id = "final"
kind = "vote"
name = "Wielki Finał"
numbers = ["70120"]
keywords = ["GLOS"]

[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }
labels = { A = "Anna Nowak", B = "Bartek Wiśniewski" }

[replies]
accepted = "Dziękujemy za głos na {{ label }}."
"""

XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


def _now() -> str:
    return str(int(time.time()))


async def _vote(svc: object, text: str, sender: str) -> None:
    await send_mo(svc, text=text, sender=sender, time=_now())  # type: ignore[arg-type]


async def test_overview_counts_today_the_outbox_and_each_flow(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        await _vote(svc, "GLOS A", "48600000001")
        await _vote(svc, "GLOS B", "48600000002")
        await _vote(svc, "HELLO", "48600000003")
        async with signed_in(svc, "vera", "viewer") as client:
            page = await client.get("/")
            assert page.status_code == 200
            figures = await client.get("/overview/figures")
            assert "<html" not in figures.text  # the part alone, for the refresh
            for text in (page.text, figures.text):
                assert 'Received today</span><span class="big">3<' in text
                assert 'Queued to send today</span><span class="big">2<' in text  # two replies
                assert "Wielki Finał" in text and "state-open" in text
                assert '<span class="mid">2</span> <small class="muted">votes' in text
            assert "Dry-run: replies and sends are recorded" in page.text
            assert "mode-dry-run" in page.text


async def test_a_vote_flow_page_shows_the_tally_with_counts_and_shares(
    database_url: str, tmp_path: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        for i, option in enumerate("AAAB"):
            await _vote(svc, f"GLOS {option}", f"4860000000{i}")
        async with signed_in(svc, "vera", "viewer") as client:
            page = await client.get("/flows/final")
            assert page.status_code == 200
            assert "3 · 75.0%" in page.text and "1 · 25.0%" in page.text
            assert "Anna Nowak" in page.text and 'data-live="/flows/final/live"' in page.text
            assert "accepted" in page.text  # decisions by outcome
            assert (
                'id = "final"' not in page.text and "id = &#34;final&#34;" in page.text
            )  # the file, escaped
            listing = await client.get("/flows")
            assert 'href="/flows/final"' in listing.text
            missing = await client.get("/flows/nothing")
            assert missing.status_code == 404 and "No flow &#39;nothing&#39; is loaded" in missing.text


async def test_the_live_tally_streams_new_votes_without_a_reload(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        await _vote(svc, "GLOS A", "48600000001")
        async with signed_in(svc, "vera", "viewer") as client:
            events: list[str] = []
            async with client.stream("GET", "/flows/final/live") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                data: list[str] = []
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        events.append("\n".join(data))
                        data = []
                        if len(events) == 1:
                            await _vote(svc, "GLOS B", "48600000002")  # arrives while watching
                        else:
                            break
            assert "1 · 100.0%" in events[0]
            assert "1 · 50.0%" in events[1] and "Bartek" in events[1]


async def _first_event(stream: httpx.Response) -> str:
    data: list[str] = []
    async for line in stream.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:])
        elif not line and data:
            return "\n".join(data)
    raise AssertionError("the stream ended without a tally")


async def test_live_viewers_get_the_tally_in_their_own_language(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        await _vote(svc, "GLOS A", "48600000001")
        async with signed_in(svc, "vera", "viewer") as client:

            def live(language: str) -> AbstractAsyncContextManager[httpx.Response]:
                return client.stream("GET", "/flows/final/live", headers={"accept-language": language})

            async with live("en") as first:
                english = await _first_event(first)
                async with live("pl") as second, live("en") as third:  # while the first still watches
                    polish, again = await _first_event(second), await _first_event(third)
    assert "counted at" in english and "policzono o" in polish and "counted at" not in polish
    assert "counted at" in again and "policzono o" not in again  # a rendering is never lent across languages


async def test_sms_text_with_html_shows_as_text(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    async with dashboard_service(database_url, flows_dir=str(flows)) as svc:
        for i, evil in enumerate(XSS):
            await _vote(svc, f"GLOS A {evil}", f"4860000000{i}")
        async with signed_in(svc, "vera", "viewer") as client:
            page = await client.get("/flows/final")
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
            assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
            for evil in XSS:
                assert evil not in page.text


async def test_live_pages_need_a_signed_in_viewer(database_url: str, tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    paths = ("/flows", "/flows/final", "/flows/final/live", "/flows/final/tally", "/overview/figures")
    async with (
        dashboard_service(database_url, flows_dir=str(flows)) as svc,
        httpx.AsyncClient(base_url=svc.base_url) as stranger,
    ):
        for path in paths:
            assert (await stranger.get(path)).status_code == 303, path
