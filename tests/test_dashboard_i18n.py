"""Polish and English: chosen by the browser, switchable, remembered; catalogs complete; Warsaw times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from app.dashboard import i18n
from tests.dashboard import dashboard_service, signed_in

ROOT = Path(__file__).resolve().parent.parent


def _extracted() -> set[str]:
    found: set[str] = set()
    method_map = [("templates/**.html", "jinja2"), ("app/dashboard/**.py", "python")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None, "tr": None}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options, keywords=keywords
    ):
        found.update([message] if isinstance(message, str) else message)
    return found


def test_every_text_of_the_dashboard_has_a_polish_translation() -> None:
    with (i18n.CATALOGS / "pl" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = read_po(f)
    translated = {m.id for m in catalog if m.id and m.string}
    missing = sorted(_extracted() - translated)
    assert not missing, f"run `make messages` and translate in the Polish catalog: {missing}"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "pl-PL,pl;q=0.9,en;q=0.8", "pl"),
        (None, "de-DE,en;q=0.5,pl;q=0.7", "pl"),
        (None, "de-DE", "en"),
        (None, None, "en"),
        ("en", "pl", "en"),
        ("xx", "pl", "pl"),
        (None, "pl;q=0", "en"),
    ],
)
def test_the_language_follows_the_cookie_then_accept_language(
    cookie: str | None, header: str | None, expected: str
) -> None:
    assert i18n.choose(cookie, header) == expected


def test_times_are_warsaw_times_with_the_date_when_not_today() -> None:
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert i18n.when(datetime(2026, 7, 1, 9, 5, 7, tzinfo=UTC), "pl", now) == "11:05:07"  # CEST
    assert i18n.when(datetime(2026, 6, 30, 9, 5, tzinfo=UTC), "en", now) == "30 Jun 11:05"
    assert i18n.when(datetime(2025, 1, 2, 9, 5, tzinfo=UTC), "pl", now) == "2 sty 2025 10:05"
    assert i18n.number(1234567, "pl") == "1\xa0234\xa0567"
    assert i18n.number(1234567, "en") == "1,234,567"


async def test_the_browser_language_is_used_and_the_switch_is_remembered(database_url: str) -> None:
    async with dashboard_service(database_url) as svc, signed_in(svc, "anna", "admin") as client:
        polish = await client.get("/", headers={"accept-language": "pl-PL,pl;q=0.9"})
        assert '<html lang="pl">' in polish.text and "Odebrane dziś" in polish.text
        switch = await client.get("/language/en", params={"next": "/audit"})
        assert switch.status_code == 303 and switch.headers["location"] == "/audit"
        english = await client.get("/", headers={"accept-language": "pl"})
        assert '<html lang="en">' in english.text and "Received today" in english.text
        back = await client.get("/language/pl", params={"next": "https://evil.example/"})
        assert back.headers["location"] == "/"
        assert "Przegląd" in (await client.get("/")).text
