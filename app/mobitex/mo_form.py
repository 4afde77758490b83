"""The MO request Mobitex POSTs to us: body decoding, validation and number normalisation.

The spec does not say which content type or character set Mobitex uses, nor whether empty
optional fields are sent or left out, so everything here is tolerant of all the variants.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated
from urllib.parse import unquote_to_bytes

import msgspec
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

from app.errors import InvalidMessage

FIELDS = ("number", "sender", "text", "sms_id", "smcsc", "time", "ext_id")
REQUIRED = ("number", "sender", "text", "sms_id", "time")

_POLISH = frozenset("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")
_KNOWN_CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "windows-1250": "cp1250",
    "cp1250": "cp1250",
    "iso-8859-2": "iso-8859-2",
    "latin2": "iso-8859-2",
    "iso8859-2": "iso-8859-2",
}

# An MO form has seven fields; a body with many more parts, or a form inside a form, is no SMS.
MAX_PARTS = 32

# 1970-2100: a `time` outside this is a corrupt field, not a real timestamp.
_MIN_TIME, _MAX_TIME = 0, 4_102_444_800


class MoMessage(msgspec.Struct, frozen=True):
    """One validated MO message, numbers already normalised to digits-only international form."""

    sms_id: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9]{32}$")]
    number: Annotated[str, msgspec.Meta(pattern="^[0-9]{3,15}$")]
    sender: Annotated[str, msgspec.Meta(pattern="^[0-9]{9,15}$")]
    text: str
    time: Annotated[int, msgspec.Meta(ge=_MIN_TIME, le=_MAX_TIME)]
    smcsc: Annotated[str, msgspec.Meta(pattern="^[0-9]{3,15}$")] | None = None
    ext_id: Annotated[str, msgspec.Meta(pattern="^[\\x21-\\x7e]{1,64}$")] | None = None


class RefusedBody(InvalidMessage):
    """A body no Mobitex MO can be (a form nested in a form, hundreds of parts): kept raw, refused."""


_PUNCTUATION = re.compile(r"[\s\-().]")


def normalise_number(value: str) -> str:
    """``+48 600-123-456``, ``0048600123456`` and ``600123456`` all become ``48600123456``.

    Nine digits is a Polish national number (Mobitex is a Polish gateway), so ``48`` is put in
    front; short codes such as ``70120`` are left as they are.
    """
    digits = value if value.isdigit() else _PUNCTUATION.sub("", value)  # Mobitex sends bare digits
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if len(digits) == 9 and digits.isdigit() and digits[0] != "0":
        digits = "48" + digits
    return digits


def _decoded(values: list[bytes], codec: str) -> str | None:
    try:
        return "".join(v.decode(codec) for v in values)
    except UnicodeDecodeError:
        return None


def _polish_score(text: str) -> int:
    """Polish letters count for a reading; C1 control codes count against it."""
    return sum(c in _POLISH for c in text) - 2 * sum("\x80" <= c <= "\x9f" for c in text)


def _pick_charset(values: list[bytes], declared: str | None) -> str:
    """Choose the reading of the bytes that makes the most Polish sense.

    Valid UTF-8 is not proof of UTF-8: windows-1250 "ĆŚ" (C6 8C) is also valid UTF-8 ("ƌ"). Each
    candidate is scored by the Polish letters it yields; a genuine UTF-8 Polish letter never
    yields more than one in another charset, so UTF-8 wins ties and the single-byte charsets
    win only where their reading is clearly more Polish.
    """
    codec = _KNOWN_CHARSETS.get((declared or "").lower())
    if all(v.isascii() for v in values):  # every candidate reads ASCII alike, and scores nothing
        return codec or "utf-8"
    if codec is not None and _decoded(values, codec) is not None:
        return codec
    best, best_score = "iso-8859-2", None  # ISO-8859-2 decodes any byte: the last resort
    for candidate in ("utf-8", "cp1250", "iso-8859-2"):
        text = _decoded(values, candidate)
        if text is None:
            continue
        score = _polish_score(text)
        if best_score is None or score > best_score:
            best, best_score = candidate, score
    return best


def _content_type(header: str | None) -> tuple[str, dict[str, str]]:
    if not header:
        return "", {}
    main, *params = header.split(";")
    parsed = {}
    for p in params:
        k, _, v = p.strip().partition("=")
        parsed[k.strip().lower()] = v.strip().strip('"')
    return main.strip().lower(), parsed


def _multipart_pairs(body: bytes, boundary: str) -> list[tuple[bytes, bytes, str | None]]:
    """Split a multipart form in one linear pass, within a bounded number of parts.

    The streaming parser never descends into a part, so a nested form costs nothing to find:
    it is refused, as are bodies with more parts than any MO form has.
    """
    pairs: list[tuple[bytes, bytes, str | None]] = []
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    try:
        with PushMultipartParser(
            boundary, content_length=len(body), max_segment_count=MAX_PARTS, max_header_count=8
        ) as parser:
            for event in itertools.chain(parser.parse(body), parser.parse(b"")):
                if isinstance(event, MultipartSegment):
                    if (event.content_type or "").startswith("multipart/"):
                        raise RefusedBody("nested multipart part: an MO form holds plain fields only")
                    segment, chunks = event, []
                elif isinstance(event, bytes):
                    chunks.append(event)
                elif segment is not None:
                    if segment.name is not None:
                        pairs.append((segment.name.encode(), b"".join(chunks), segment.charset))
                    segment = None
    except ParserLimitReached:
        raise RefusedBody(
            f"multipart body with over {MAX_PARTS} parts or headers: no MO form has as many"
        ) from None
    except MultipartError as exc:
        raise InvalidMessage(f"unreadable multipart body: {exc} (check the boundary)") from None
    if not pairs:
        raise InvalidMessage("multipart body without named parts (check the boundary)")
    return pairs


def _unquoted(raw: bytes) -> bytes:
    # Most fields (digits, ids) have nothing to decode. find(), not `in`: bytes.__contains__ tries
    # the needle as an integer first and builds a TypeError for every bytes needle it is given.
    if raw.find(b"%") < 0 and raw.find(b"+") < 0:
        return raw
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _urlencoded_pairs(body: bytes) -> list[tuple[bytes, bytes]]:
    """Split a form body into raw byte pairs, percent-decoding without assuming a charset."""
    pairs = []
    for chunk in body.split(b"&"):
        if not chunk.strip():
            continue
        key, _, value = chunk.partition(b"=")
        pairs.append((_unquoted(key), _unquoted(value)))
    return pairs


def decode_body(body: bytes, content_type: str | None) -> tuple[dict[str, str], str]:
    """Return the form fields as text and the charset they were decoded with."""
    kind, params = _content_type(content_type)
    declared = params.get("charset")
    if kind == "multipart/form-data":
        if "boundary" not in params:
            raise InvalidMessage("multipart/form-data without a boundary")
        triples = _multipart_pairs(body, params["boundary"])
        declared = declared or next((c for _, _, c in triples if c), None)
        pairs = [(k, v) for k, v, _ in triples]
    elif kind in ("", "application/x-www-form-urlencoded", "text/plain"):
        # Mobitex does not document its content type; an urlencoded body is the usual one.
        pairs = _urlencoded_pairs(body)
    else:
        raise InvalidMessage(f"unsupported content type {kind!r}; expected application/x-www-form-urlencoded")
    charset = _pick_charset([v for _, v in pairs], declared)
    fields: dict[str, str] = {}
    for raw_key, raw_value in pairs:
        key = raw_key.decode("ascii", "replace").strip()
        value = raw_value.decode(charset)
        if key in fields and fields[key] != value:
            raise InvalidMessage(f"field {key!r} given twice with different values")
        fields[key] = value
    return fields, charset


def parse_mo(fields: dict[str, str], max_text: int) -> MoMessage:
    """Validate decoded fields into a MoMessage; the error says which field is wrong and how."""
    missing = [f for f in REQUIRED if f not in fields]
    if missing:
        raise InvalidMessage(f"missing field(s): {', '.join(missing)}")
    text = fields["text"]
    bad = [f for f in FIELDS if "\x00" in fields.get(f, "")]
    if bad:
        # GSM has no NUL character (0x00 is "@"); a NUL means a broken client, and PostgreSQL
        # cannot store it in text anyway.
        raise InvalidMessage(f"NUL character in field(s): {', '.join(bad)}")
    if len(text) > max_text:
        raise InvalidMessage(f"text is {len(text)} characters, over the limit of {max_text}")
    data: dict[str, object] = {
        "sms_id": fields["sms_id"].strip(),
        "number": normalise_number(fields["number"]),
        "sender": normalise_number(fields["sender"]),
        "text": text,
        "time": fields["time"].strip(),
    }
    for optional in ("smcsc", "ext_id"):
        value = fields.get(optional, "").strip()
        if value:
            data[optional] = normalise_number(value) if optional == "smcsc" else value
    try:
        return msgspec.convert(data, MoMessage, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidMessage(str(exc)) from None
