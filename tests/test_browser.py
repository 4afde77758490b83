"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): sign in, vote from the
simulator's phone and watch the tally change without a reload, read that phone's thread, export a
list as CSV, repair a quarantined request, switch language, sign out; no JavaScript error on any page.

Screenshots go to a temporary folder, or to the folder in SMSFLOWS_SCREENSHOTS (``make screenshots``
sets docs/screenshots) to refresh the pictures in the docs.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from sqlalchemy import insert

from app.db.models import InboundMessage, OutboxMessage, utcnow
from tests.conftest import Service, mo_form, new_sms_id, write_flows
from tests.dashboard import PASSWORD, add_user, dashboard_service
from tests.test_dashboard_pages import VOTE, _vote

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Chromium is missing: `apt-get install chromium` (.ci/run does it)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SMSFLOWS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _traffic(svc: Service) -> None:
    """Messages over the last three hours, so the chart has something to show."""
    rng = random.Random(7)
    now = utcnow()
    inbound, outbound = [], []
    for minute in range(180, 0, -1):
        at = now - timedelta(minutes=minute)
        for _ in range(rng.randint(0, 4) + (6 if 40 < minute < 70 else 0)):
            inbound.append(
                {
                    "sms_id": new_sms_id(),
                    "number": "70120",
                    "sender": f"48600{rng.randint(0, 999999):06d}",
                    "text": "GLOS A",
                    "time": int(at.timestamp()),
                    "charset": "utf-8",
                    "raw_body": b"",
                    "client_ip": "127.0.0.1",
                    "received_at": at,
                    "last_received_at": at,
                    "deliveries": 1,
                    "status": "processed",
                }
            )
            if rng.random() < 0.8:  # not every message is answered
                outbound.append(
                    {
                        "ext_id": new_sms_id()[:20],
                        "to_number": "48600000000",
                        "text": "Dziękujemy!",
                        "encoding": "gsm7",
                        "parts": 1,
                        "status": "dry-run",
                        "created_at": at,
                    }
                )
    async with svc.engine.begin() as conn:
        await conn.execute(insert(InboundMessage), inbound)
        await conn.execute(insert(OutboxMessage), outbound)


def _watch_console(page: Page, errors: list[str]) -> None:
    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))


SIM_PHONE = "48600123456"
THANKS_B = "Dziękujemy za głos na Bartek Wiśniewski."


async def _vote_from_the_simulator(base: str, flow_page: Page, errors: list[str], shots: Path) -> None:
    """A vote typed into the simulator's phone moves the tally on the flow page open beside it."""
    tally = flow_page.locator("[data-live-target]")
    await flow_page.evaluate("window.openSince = 'before the vote'")  # gone if the page reloads
    phone = await flow_page.context.new_page()
    _watch_console(phone, errors)
    await phone.goto(base + "/simulator")
    await expect(phone.locator("#phone h2")).to_contain_text(SIM_PHONE)
    await phone.fill("#phone textarea[name=text]", "GLOS B")
    await phone.get_by_role("button", name="Send from the phone").click()
    chat = phone.locator("#chat")
    await expect(chat.locator(".bubble.in")).to_contain_text("GLOS B")
    await expect(chat.locator(".bubble.out")).to_contain_text(THANKS_B, timeout=10_000)
    await phone.screenshot(path=shots / "simulator.png", full_page=True)
    await phone.close()

    await expect(tally).to_contain_text("4 · 50.0%", timeout=10_000)  # A and B, 4 votes each
    await expect(tally.locator(".total")).to_contain_text("8")
    assert await flow_page.evaluate("window.openSince") == "before the vote"


async def _read_the_thread_and_export_it(base: str, page: Page, tmp_path: Path, shots: Path) -> None:
    """The simulator's phone has a thread (its vote in, our thanks out), and the message list
    filtered to it exports as CSV."""
    await page.click("nav >> text=Contacts")
    await page.fill("input[name=phone]", SIM_PHONE)
    await page.get_by_role("button", name="Find").click()
    await expect(page).to_have_url(f"{base}/contacts/{SIM_PHONE}")
    await expect(page.locator(".chat .bubble.in")).to_contain_text("GLOS B")
    await expect(page.locator(".chat .bubble.out")).to_contain_text(THANKS_B)
    await page.screenshot(path=shots / "contact.png", full_page=True)

    await page.get_by_role("link", name="Its messages in").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "messages-in.csv"
    saved = tmp_path / "messages-in.csv"
    await download.save_as(saved)
    header, *rows = csv.reader(saved.read_text(encoding="utf-8-sig").splitlines())
    assert header[:6] == ["id", "received_at", "sms_id", "sender", "number", "text"]
    assert [(r[3], r[5], r[6], r[7]) for r in rows] == [(SIM_PHONE, "GLOS B", "processed", "final")]


async def _repair_a_quarantined_request(svc: Service, page: Page, shots: Path) -> None:
    """A request Mobitex sent with a sender that is no number waits in quarantine; corrected on
    its page, it is stored as a message and goes through the flows."""
    form = mo_form(sender="not-a-phone", text="GLOS A")
    async with httpx.AsyncClient() as mobitex:
        assert (await mobitex.post(svc.mo_url, data=form)).text.strip() == "OK quarantined"
    await page.click("nav >> text=Failures")
    held = page.locator("#quarantine tbody tr")
    await expect(held).to_have_count(1)
    await expect(held).to_contain_text("not-a-phone")
    await held.get_by_role("link", name="Repair").click()
    await page.fill("input[name=sender]", "48600777888")
    await page.screenshot(path=shots / "quarantined.png", full_page=True)
    await page.get_by_role("button", name="Re-ingest").click()
    await expect(page.locator(".notice.ok")).to_contain_text(f"re-ingested as message {form['sms_id']}")
    await expect(page.locator("#quarantine .empty")).to_be_visible()
    await page.locator(".notice.ok").get_by_role("link", name="Open the message").click()
    await expect(page.locator(".facts")).to_contain_text("48600777888")
    await expect(page.locator(".facts")).to_contain_text("processed")


async def test_sign_in_vote_from_the_simulator_read_export_repair_switch_language_and_sign_out(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    flows = write_flows(tmp_path / "flows", final=VOTE)
    database = f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"
    async with dashboard_service(database, flows_dir=str(flows)) as svc:
        await add_user(svc, "anna", "admin")
        await _traffic(svc)
        for i, option in enumerate("AAABBA"):
            await _vote(svc, f"GLOS {option}", f"4860010000{i}")

        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page = await context.new_page()
        errors: list[str] = []
        _watch_console(page, errors)

        await page.goto(svc.base_url + "/")
        await expect(page).to_have_url(svc.base_url + "/login?next=/")
        await page.screenshot(path=shots / "login.png")
        await page.fill("input[name=name]", "anna")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Overview")
        await expect(page.locator(".figure").first).to_contain_text("Received today")
        await page.screenshot(path=shots / "overview.png", full_page=True)

        await page.click("nav >> text=Flows")
        await page.click("text=Wielki Finał")
        tally = page.locator("[data-live-target]")
        await expect(tally).to_contain_text("4 · 66.7%")
        await expect(page.locator("[data-live-status]")).to_contain_text("Live")
        await _vote(svc, "GLOS B", "48600200000")  # while the page is open: no reload
        await expect(tally).to_contain_text("3 · 42.9%", timeout=10_000)
        await expect(tally).to_contain_text("4 · 57.1%")
        await page.screenshot(path=shots / "flow-vote.png", full_page=True)
        await _vote_from_the_simulator(svc.base_url, page, errors, shots)
        await _read_the_thread_and_export_it(svc.base_url, page, tmp_path, shots)
        await _repair_a_quarantined_request(svc, page, shots)

        await page.click("nav >> text=Audit log")
        entries = page.locator("tbody tr")  # newest first: the repair, the simulator, the sign-in
        await expect(entries.first).to_contain_text("quarantine.reingest")
        await expect(entries.filter(has_text="simulator.send")).to_have_count(1)
        await expect(entries.filter(has_text="session.login")).to_have_count(1)
        await page.screenshot(path=shots / "audit.png")

        await page.click("nav >> text=Users")
        await page.fill("form[action='/users'] input[name=name]", "marek")
        await page.select_option("form[action='/users'] select[name=role]", "operator")
        await page.fill("form[action='/users'] input[name=password]", "marek's password")
        await page.click("text=Add user")
        await expect(page.locator(".notice.ok")).to_contain_text("User marek added")
        await page.screenshot(path=shots / "users.png")

        await page.click("a[hreflang=pl]")
        await expect(page.locator("h1")).to_have_text("Użytkownicy")  # the same page, in Polish
        await page.click("nav >> text=Przegląd")
        await expect(page.locator(".figure").first).to_contain_text("Odebrane dziś")
        await page.screenshot(path=shots / "overview-pl.png", full_page=True)

        await page.click("text=Wyloguj")
        await expect(page).to_have_url(svc.base_url + "/login")
        await page.goto(svc.base_url + "/flows/final")
        await expect(page).to_have_url(svc.base_url + "/login?next=/flows/final")
        await context.close()

        phone = await browser.new_context(
            viewport={"width": 390, "height": 844}, device_scale_factor=2, color_scheme="dark", is_mobile=True
        )
        small = await phone.new_page()
        _watch_console(small, errors)
        await small.goto(svc.base_url + "/login")
        await small.fill("input[name=name]", "anna")
        await small.fill("input[name=password]", PASSWORD)
        await small.click("button[type=submit]")
        await small.goto(svc.base_url + "/flows/final")
        await expect(small.locator("[data-live-status]")).to_contain_text("Live")
        await small.screenshot(path=shots / "flow-vote-phone-dark.png")
        await phone.close()

        assert errors == [], errors


async def test_each_kind_of_flow_has_its_page_and_prints_without_the_navigation(
    tmp_path: Path, browser: Browser, shots: Path
) -> None:
    from tests.test_dashboard_kinds import _all_kinds, _mo

    database = f"sqlite+aiosqlite:///{tmp_path / 'smsflows.db'}"
    async with dashboard_service(database, flows_dir=str(_all_kinds(tmp_path))) as svc:
        await add_user(svc, "vera", "viewer")
        rng = random.Random(3)
        for i in range(40):
            sender = f"48600{rng.randint(0, 999999):06d}"
            await _mo(svc, "ANKIETA", sender)
            await _mo(svc, str(rng.choice([6, 7, 8, 8, 9, 9, 9, 10])), sender)
            if i % 4:
                await _mo(svc, rng.choice(["TAK", "TAK", "NIE"]), sender)
            if i % 3 == 0:
                await _mo(svc, rng.choice(["Więcej muzyki", "Krótsze reklamy", "Super!"]), sender)
        for i in range(12):
            await _mo(svc, f"KOD A{i:07d}", f"4860020{i % 5:04d}")
        await _mo(svc, "KOD zly", "48600200001")
        await _mo(svc, "NOWOSCI", "48600300001")

        context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page = await context.new_page()
        errors: list[str] = []
        _watch_console(page, errors)
        await page.goto(svc.base_url + "/login")
        await page.fill("input[name=name]", "vera")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await expect(page.locator("h1")).to_have_text("Overview")

        await page.goto(svc.base_url + "/flows/ankieta")
        await expect(page.locator("figure.bars").first).to_contain_text("Completion")
        await page.screenshot(path=shots / "flow-survey.png", full_page=True)
        await page.goto(svc.base_url + "/flows/lato")
        await expect(page.locator(".figure").first).to_contain_text("12")
        await expect(page.locator("table.numbers").first).to_contain_text("***")  # masked for a viewer
        await page.screenshot(path=shots / "flow-code.png", full_page=True)
        await page.goto(svc.base_url + "/flows/info")
        await expect(page.locator(".empty").first).to_contain_text("Nothing here yet. Send INFO")
        await page.screenshot(path=shots / "flow-empty.png", full_page=True)

        await page.goto(svc.base_url + "/flows/ankieta")
        await page.emulate_media(media="print")
        await expect(page.locator("header.top")).to_be_hidden()
        head = page.locator(".page-head")
        await expect(head).to_contain_text("Ankieta po programie")
        await expect(head).to_contain_text("version")
        await expect(head).to_contain_text("as of")
        await page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
        await page.screenshot(path=shots / "flow-survey-print.png", full_page=True)
        await page.pdf(path=str(tmp_path / "ankieta.pdf"), format="A4")
        assert (tmp_path / "ankieta.pdf").read_bytes().startswith(b"%PDF")
        await context.close()
        assert errors == [], errors
