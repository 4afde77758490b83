"""The draws pages: who may open and run them, the confirmation step, one draw per submitted
form, the protocol with its record, and no whole number for a viewer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.dashboard.i18n import stamp
from app.draws import decode, verify
from tests.conftest import Service, send_mo, write_flows
from tests.dashboard import csrf_of, dashboard_service, signed_in
from tests.test_draws import IN_WINDOW, KEY, PHONES, STAFF, STOP, STOPPED, VOTE

ORDER = ["viewer", "operator", "admin"]


@pytest.fixture
async def contest(database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    flows = write_flows(tmp_path / "flows", final=VOTE, stop=STOP)
    async with dashboard_service(database_url, flows_dir=str(flows), pseudonym_key=KEY) as svc:
        for n, phone in enumerate(PHONES):
            await send_mo(svc, sender=phone, text="GLOS A", time=str(IN_WINDOW + n))
        await send_mo(svc, sender=STOPPED, text="STOP", time=str(IN_WINDOW + 100))
        yield svc


async def _check(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    token = csrf_of((await client.get("/flows/final/draws/new")).text)
    return await client.post("/flows/final/draws/new", data={"_csrf_token": token, **fields})


def _confirmed_form(html: str) -> dict[str, str]:
    """The hidden fields of the confirmation's "Run the draw" form, as a browser sends them."""
    import re

    start = html.index('action="/flows/final/draws/run"')
    form = html[start : html.index("</form>", start)]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def _draw(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    confirm = await _check(client, **fields)
    assert confirm.status_code == 200, confirm.text
    return await client.post("/flows/final/draws/run", data=_confirmed_form(confirm.text))


@pytest.mark.parametrize("role", ORDER)
async def test_each_role_opens_the_draw_pages_it_may(role: str, contest: Service) -> None:
    async with signed_in(contest, "someone", role) as client:
        may_run = role != "viewer"
        assert (await client.get("/draws")).status_code == 200
        flow_page = (await client.get("/flows/final")).text
        assert ('href="/flows/final/draws/new"' in flow_page) == may_run
        assert (await client.get("/flows/final/draws/new")).status_code == (200 if may_run else 403)
        # A viewer cannot run a draw by posting either (the token is a real one from another page).
        token = csrf_of((await client.get("/draws")).text)
        check = await client.post("/flows/final/draws/new", data={"_csrf_token": token, "winners": "1"})
        assert check.status_code == (200 if may_run else 403)
        ran = await client.post(
            "/flows/final/draws/run", data={"_csrf_token": token, "winners": "1", "round": "1"}
        )
        assert ran.status_code == (303 if may_run else 403)
        drawn = await contest.scalar("SELECT count(*) FROM draws")
        assert drawn == (1 if may_run else 0)
        if may_run:
            assert (await client.get("/flows/final/draws/1")).status_code == 200
            assert (await client.get("/flows/final/draws/1/record.json")).status_code == 200


async def test_the_form_needs_its_csrf_token(contest: Service) -> None:
    async with signed_in(contest, "olga", "operator") as client:
        await client.get("/flows/final/draws/new")
        refused = await client.post("/flows/final/draws/run", data={"winners": "1", "round": "1"})
        assert refused.status_code == 403
        assert await contest.scalar("SELECT count(*) FROM draws") == 0


async def test_a_draw_run_from_the_page_is_confirmed_stored_once_and_audited(contest: Service) -> None:
    async with signed_in(contest, "olga", "operator") as client:
        confirm = await _check(client, winners="2", reserves="1", seed="Lotto 4 9 17", exclude=f"+{STAFF}\n")
        assert confirm.status_code == 200
        # What will happen: 12 phones less the STOP one and the excluded one.
        assert "10 eligible entries" in confirm.text and "1 excluded number" in confirm.text
        assert await contest.scalar("SELECT count(*) FROM draws") == 0  # nothing drawn yet
        form = _confirmed_form(confirm.text)
        ran = await client.post("/flows/final/draws/run", data=form)
        assert ran.status_code == 303 and ran.headers["location"] == "/flows/final/draws/1?done=drawn"
        page = await client.get(ran.headers["location"])
        assert "Round 1 drawn: 2 winner(s) and 1 reserve(s) from 10 entries" in page.text
        again = await client.post("/flows/final/draws/run", data=form)  # the same page sent twice
        assert again.headers["location"] == "/flows/final/draws/1?done=already"
        assert "nothing was drawn again" in (await client.get(again.headers["location"])).text
        assert await contest.scalar("SELECT count(*) FROM draws") == 1
        audit = await contest.rows("SELECT actor, target, client FROM audit_log WHERE action = 'draws.run'")
        assert audit == [("olga", "final round 1", "127.0.0.1")]
        record = decode((await client.get("/flows/final/draws/1/record.json")).content)
        assert verify(record).ok and record.seed == "Lotto 4 9 17" and record.drawn_by == "olga"
        stored = await contest.scalar("SELECT record FROM draws WHERE round = 1")
        assert (await client.get("/flows/final/draws/1/record.json")).text == stored
        # An operator sees the winners' numbers whole; staff and STOP never win.
        whole = {r[0] for r in await contest.rows("SELECT phone FROM draw_picks")}
        assert all(phone in page.text for phone in whole) and not {STAFF, STOPPED} & whole
        listed = await client.get("/draws")
        assert "/flows/final/draws/1" in listed.text and record.entries_sha256[:12] in listed.text


async def test_a_further_round_needs_a_reason_and_both_stay_listed(contest: Service) -> None:
    async with signed_in(contest, "olga", "operator") as client:
        assert (await _draw(client, winners="1")).status_code == 303
        missing = await _check(client, winners="1")
        assert missing.status_code == 400 and "say why a further round is drawn" in missing.text
        second = await _draw(client, winners="1", reason="the winner was staff")
        assert second.headers["location"] == "/flows/final/draws/2?done=drawn"
        listed = (await client.get("/draws")).text
        assert "/flows/final/draws/1" in listed and "the winner was staff" in listed


async def test_wrong_fields_are_sentences_on_the_form(contest: Service) -> None:
    async with signed_in(contest, "olga", "operator") as client:
        for fields, says in (
            ({"winners": "many"}, "winners: give a whole number"),
            ({"winners": "0"}, "winners"),
            ({"winners": "1", "since": "yesterday"}, "is not a time"),
            ({"winners": "1", "exclude": "not a phone"}, "is not a phone number"),
            ({"winners": "1", "since": "2025-12-01T23:00", "until": "2025-12-01T20:00"}, "since must come"),
        ):
            resp = await _check(client, **fields)
            assert resp.status_code == 400 and says in resp.text, (fields, resp.text)
        assert (await client.get("/flows/nope/draws/new")).status_code == 404
        assert (await client.get("/flows/final/draws/9")).status_code == 404


async def test_the_protocol_shows_a_viewer_no_whole_number(contest: Service) -> None:
    async with signed_in(contest, "olga", "operator") as operator:
        await _draw(operator, winners="3", reserves="2")
    async with signed_in(contest, "vera", "viewer") as viewer:
        page = await viewer.get("/flows/final/draws/1")
        assert page.status_code == 200
        assert not any(phone in page.text for phone in PHONES)
        assert "48600***" in page.text and "Numbers are masked" in page.text
        record = await viewer.get("/flows/final/draws/1/record.json")
        assert not any(phone in record.text for phone in PHONES)
        # Printed and kept: the time of the draw carries its date, whatever day it is read.
        assert stamp(decode(record.content).drawn_at, "en") in page.text
        assert 'class="card signatures"' in page.text and 'class="print-head"' in page.text
