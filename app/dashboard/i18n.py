"""Languages of the dashboard: gettext catalogs read from their ``.po`` files, the locale of a request.

The catalogs are compiled in memory at start (Babel reads the ``.po`` text), so a fresh checkout
and an installed wheel work alike without a compile step.
"""

from __future__ import annotations

import gettext
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from litestar.connection import ASGIConnection

LOCALES = ("pl", "en")
DEFAULT = "en"
COOKIE = "smsflows_lang"
ZONE = ZoneInfo("Europe/Warsaw")
CATALOGS = Path(__file__).with_name("locale")

LANGUAGE_NAMES = {"pl": "Polski", "en": "English"}


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The catalog of ``locale``; English is the source language and needs none."""
    po = CATALOGS / locale / "LC_MESSAGES" / "messages.po"
    if not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=locale)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def N_(message: str) -> str:
    """Marks a string for the catalog where it is defined; it is translated where it is shown."""
    return message


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language if valid, else the best of Accept-Language, else English."""
    if cookie in LOCALES:
        return cookie
    best: tuple[float, int, str] | None = None
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        lang = tag.strip().lower().split("-")[0]
        if lang in LOCALES and quality > 0 and (best is None or (quality, -position) > best[:2]):
            best = (quality, -position, lang)
    return best[2] if best else DEFAULT


def locale_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    cached = connection.scope.get("smsflows_locale")
    if isinstance(cached, str):
        return cached
    locale = choose(connection.cookies.get(COOKIE), connection.headers.get("accept-language"))
    connection.scope["smsflows_locale"] = locale  # type: ignore[typeddict-unknown-key]
    return locale


# What templates show: numbers and times in the reader's language, times in Warsaw.


def number(value: float | int | None, locale: str) -> str:
    if value is None:
        return "–"
    return format_decimal(value, locale=locale)


def percent(share: float, locale: str) -> str:
    return format_percent(share, format="#,##0.0%", locale=locale)


def when(value: datetime | None, locale: str, now: datetime | None = None) -> str:
    """Time in Warsaw; the date too when it is not today there."""
    if value is None:
        return "–"
    local = value.astimezone(ZONE)
    today = (now or datetime.now(UTC)).astimezone(ZONE).date()
    if local.date() == today:
        return format_datetime(local, "HH:mm:ss", tzinfo=ZONE, locale=locale)
    pattern = "d MMM HH:mm" if local.year == today.year else "d MMM y HH:mm"
    return format_datetime(local, pattern, tzinfo=ZONE, locale=locale)


def stamp(value: datetime | None, locale: str) -> str:
    """Date and time in Warsaw, always with the date: for protocols that are printed and kept."""
    if value is None:
        return "–"
    return format_datetime(value.astimezone(ZONE), "d MMMM y, HH:mm:ss", tzinfo=ZONE, locale=locale)


def ago(value: datetime | None, locale: str, now: datetime | None = None) -> str:
    if value is None:
        return ""
    delta = value - (now or datetime.now(UTC))
    return format_timedelta(delta, add_direction=True, threshold=1.1, locale=locale)


def language_name(locale: str) -> str:
    return LANGUAGE_NAMES.get(locale) or Locale.parse(locale).display_name or locale
