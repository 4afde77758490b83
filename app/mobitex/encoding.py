"""GSM-7 / UCS-2 measurement of outgoing text, so the MT client picks the right Mobitex ``type``.

Mobitex does not choose the encoding for us: text outside the GSM 03.38 alphabet (Polish letters
included) must go as ``unicode``/``unicode_concat``, and every type has a length limit (at most 3 parts).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from app.errors import Unsendable

Encoding = Literal["gsm7", "ucs2"]
MobitexType = Literal["sms", "concat", "unicode", "unicode_concat"]

# GSM 03.38 default alphabet, code points 0x00-0x7F in rows of 16. Position 0x1B is the escape
# to the extension table, not a character, so it is left out of the set below.
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_BASIC: frozenset[str] = frozenset(_BASIC_TABLE) - {"\x1b"}
"""The 127 characters of the GSM 03.38 basic table; each takes one septet."""

GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[]~|€")
"""The GSM 03.38 extension table; each is sent as ESC + character, so it takes two septets."""

GSM7_SINGLE, GSM7_PART = 160, 153  # a concatenated part loses 7 septets to the UDH
UCS2_SINGLE, UCS2_PART = 70, 67  # a concatenated part loses 3 UTF-16 units to the UDH
MAX_PARTS = 3  # Mobitex's ceiling: concat 459 septets, unicode_concat 201 units

# Polish letters and the typography that word processors and phones put in, mapped to GSM-7.
# Accented letters that the GSM basic table already has (é, ä, ñ, ...) are deliberately absent.
_TRANSLITERATION = str.maketrans(
    {
        "ą": "a",
        "ć": "c",
        "ę": "e",
        "ł": "l",
        "ń": "n",
        "ó": "o",
        "ś": "s",
        "ź": "z",
        "ż": "z",
        "Ą": "A",
        "Ć": "C",
        "Ę": "E",
        "Ł": "L",
        "Ń": "N",
        "Ó": "O",
        "Ś": "S",
        "Ź": "Z",
        "Ż": "Z",
        "“": '"',
        "”": '"',
        "„": '"',
        "«": '"',
        "»": '"',
        "‘": "'",
        "’": "'",
        "‚": "'",
        "–": "-",
        "—": "-",
        "‑": "-",
        "−": "-",
        "…": "...",
        "\u00a0": " ",
        "\u202f": " ",
    }
)


class SmsEncoding(msgspec.Struct, frozen=True, kw_only=True):
    """How a text travels as SMS: its encoding, size, part count and the Mobitex ``type`` to send."""

    encoding: Encoding
    length: int
    """GSM-7 septets (extension characters count 2) or UCS-2 UTF-16 units (an emoji counts 2)."""
    parts: int
    mobitex_type: MobitexType
    per_part: int
    """Capacity of each part: 160/153 for GSM-7, 70/67 for UCS-2."""
    fits: bool
    """Whether Mobitex accepts it: at most 3 parts (459 GSM-7 septets, 201 UCS-2 units)."""


class MessageTooLong(Unsendable):
    """An outgoing text needs more SMS parts than allowed; the message says how to shorten it."""

    def __init__(self, text: str, measured: SmsEncoding, max_parts: int) -> None:
        self.measured = measured
        self.max_parts = max_parts
        super().__init__(_too_long_message(text, measured, max_parts))


_GSM7: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION


def is_gsm7(text: str) -> bool:
    """Whether every character of ``text`` is in the GSM-7 basic or extension table."""
    return _GSM7.issuperset(text)


def measure(text: str) -> SmsEncoding:
    """Measure ``text`` as the handset will receive it: GSM-7 when it can be, else UCS-2.

    CR and LF are both in the GSM basic table, so each counts one septet (a CRLF pair is two);
    we count by the table rather than the looser conservative rules of some public clients.
    """
    # Every message sent is measured: texts of one unit a character (nearly all) are counted
    # without a list of per-character costs.
    if is_gsm7(text):
        if GSM7_EXTENSION.isdisjoint(text):
            return _measured("gsm7", len(text), None, GSM7_SINGLE, GSM7_PART)
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _measured("gsm7", sum(units), units, GSM7_SINGLE, GSM7_PART)
    if max(text) <= "\uffff":
        return _measured("ucs2", len(text), None, UCS2_SINGLE, UCS2_PART)
    # Characters beyond the BMP are a UTF-16 surrogate pair: two units that must share a part.
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return _measured("ucs2", sum(units), units, UCS2_SINGLE, UCS2_PART)


def transliterate(text: str) -> str:
    """Replace Polish letters and typographic punctuation with GSM-7 look-alikes.

    Everything else is left alone, so ``measure()`` still reports UCS-2 for emoji and the like
    instead of hiding them; GSM accented letters such as é or ü are kept, since they cost nothing.
    """
    return text.translate(_TRANSLITERATION)


def shorten_to_parts(text: str, max_parts: int = MAX_PARTS) -> str:
    """``text`` cut (ending in "…", or "..." in GSM-7) so that it fits ``max_parts`` parts."""
    whole = measure(text)
    if whole.parts <= max_parts and whole.fits:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that still fits with its ellipsis
        mid = (lo + hi + 1) // 2
        candidate = _with_ellipsis(text[:mid])
        m = measure(candidate)
        if m.parts <= max_parts and m.fits:
            lo = mid
        else:
            hi = mid - 1
    return _with_ellipsis(text[:lo])


def _with_ellipsis(text: str) -> str:
    return text.rstrip() + ("..." if is_gsm7(text) else "…")


def check_fits(text: str, max_parts: int = MAX_PARTS) -> SmsEncoding:
    """Measure ``text`` and raise :class:`MessageTooLong` if it needs more than ``max_parts`` parts.

    Mobitex's own ceiling of 3 parts applies whatever ``max_parts`` says.
    """
    measured = measure(text)
    if measured.parts > max_parts or not measured.fits:
        raise MessageTooLong(text, measured, min(max_parts, MAX_PARTS))
    return measured


def _measured(
    encoding: Encoding, length: int, units: list[int] | None, single: int, per_part: int
) -> SmsEncoding:
    """Build the measurement from the length in units and the encoding's part sizes; ``units``
    (per-character costs) when some character takes two, else None."""
    if length <= single:
        parts = 1
    elif units is None:
        parts = -(-length // per_part)
    else:
        parts = _count_parts(units, per_part)
    if encoding == "gsm7":
        mobitex_type: MobitexType = "sms" if parts == 1 else "concat"
    else:
        mobitex_type = "unicode" if parts == 1 else "unicode_concat"
    return SmsEncoding(
        encoding=encoding,
        length=length,
        parts=parts,
        mobitex_type=mobitex_type,
        per_part=single if parts == 1 else per_part,
        fits=parts <= MAX_PARTS,
    )


def _count_parts(units: list[int], per_part: int) -> int:
    """Fill parts greedily, never splitting a 2-unit character (escape or surrogate pair) across two.

    A plain ``ceil(length / per_part)`` undercounts when such a character straddles a boundary.
    """
    parts, used = 1, 0
    for cost in units:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return parts


def _too_long_message(text: str, measured: SmsEncoding, max_parts: int) -> str:
    """Say how long the text is, in which encoding, and what would make it fit."""
    if measured.encoding == "gsm7":
        unit, limit = "GSM-7 characters", GSM7_SINGLE if max_parts == 1 else GSM7_PART * max_parts
    else:
        unit, limit = "UCS-2 units", UCS2_SINGLE if max_parts == 1 else UCS2_PART * max_parts
    message = (
        f"The message is {measured.length} {unit} long ({measured.encoding}, {_parts(measured.parts)} "
        f"of up to {measured.per_part}), but at most {_parts(max_parts)} (up to {limit} {unit}) "
        "can be sent. Shorten it"
    )
    if measured.encoding == "gsm7":
        return message + "."
    plain = transliterate(text)
    blockers = "".join(dict.fromkeys(ch for ch in plain if not is_gsm7(ch)))
    if blockers:
        polish = " and transliterate the Polish letters" if plain != text else ""
        return (
            f"{message}, or replace the characters that force UCS-2 ({blockers[:10]}){polish} "
            f"to stay in GSM-7, where a part holds {GSM7_PART} characters."
        )
    after = measure(plain)
    if after.parts <= max_parts:
        return (
            f"{message}, or transliterate the Polish letters (ą→a, ł→l, ...) to stay in GSM-7: "
            f"it would then be {after.length} characters in {_parts(after.parts)}."
        )
    return f"{message}: even with Polish letters transliterated to GSM-7 it would take {_parts(after.parts)}."


def _parts(count: int) -> str:
    """``1 part``, ``2 parts``: the message reads as a sentence."""
    return f"{count} part" if count == 1 else f"{count} parts"
