"""Decoding and validating the MO form, including property-based checks."""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import InvalidMessage
from app.mobitex.mo_form import decode_body, normalise_number, parse_mo
from tests.conftest import mo_form

POLISH = "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"


def _body(form: dict[str, str], charset: str) -> bytes:
    return "&".join(f"{k}={quote_from_bytes(v.encode(charset))}" for k, v in form.items()).encode()


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("48600123456", "48600123456"),
        ("+48 600 123 456", "48600123456"),
        ("0048600123456", "48600123456"),
        ("600-123-456", "48600123456"),
        ("70120", "70120"),
        ("4112", "4112"),
    ],
)
def test_numbers_are_normalised_to_international_digits(raw: str, normal: str) -> None:
    assert normalise_number(raw) == normal


@given(text=st.text(alphabet=POLISH + "abcXYZ 0123456789.,!?", max_size=200))
def test_polish_text_decodes_identically_from_any_supported_charset(text: str) -> None:
    decoded = set()
    for charset in ("utf-8", "cp1250", "iso-8859-2"):
        fields, _ = decode_body(_body(mo_form(text=text), charset), "application/x-www-form-urlencoded")
        decoded.add(fields["text"])
    assert decoded == {text}


def test_declared_charset_is_honoured() -> None:
    body = _body(mo_form(text="żółw"), "iso-8859-2")
    fields, charset = decode_body(body, "application/x-www-form-urlencoded; charset=ISO-8859-2")
    assert (fields["text"], charset) == ("żółw", "iso-8859-2")


def test_plus_is_a_space_and_percent_2b_is_a_plus() -> None:
    fields, _ = decode_body(b"text=GLOS+A%2B", None)
    assert fields["text"] == "GLOS A+"


def test_conflicting_repeated_field_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match="twice"):
        decode_body(b"text=a&text=b", None)


def test_unsupported_content_type_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match="unsupported content type"):
        decode_body(b"{}", "application/json")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sms_id": "abc"}, "sms_id"),
        ({"sms_id": "g" * 31 + "-"}, "sms_id"),
        ({"sender": "hello"}, "sender"),
        ({"number": "12"}, "number"),
        ({"time": "yesterday"}, "time"),
        ({"time": "-5"}, "time"),
        ({"text": "a\x00b"}, "NUL"),
        ({"ext_id": "has space"}, "ext_id"),
    ],
)
def test_invalid_fields_are_named(change: dict[str, str], needle: str) -> None:
    with pytest.raises(InvalidMessage, match=needle):
        parse_mo(mo_form(**change), max_text=4096)


def test_empty_optional_fields_become_none_and_text_may_be_empty() -> None:
    msg = parse_mo(mo_form(smcsc="", ext_id="", text=""), max_text=10)
    assert (msg.smcsc, msg.ext_id, msg.text) == (None, None, "")


@given(st.binary(max_size=300))
def test_decode_body_never_raises_anything_but_invalid_message(body: bytes) -> None:
    for content_type in (None, "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"):
        try:
            fields, _ = decode_body(body, content_type)
            parse_mo(fields, max_text=100)
        except InvalidMessage:
            pass
