"""Reply templates: the text sent is the render cut to the flow's parts, remembered by what it reads."""

from __future__ import annotations

import pytest

from app.errors import FlowFileError
from app.flows import sms_templates
from app.flows.sms_templates import Reply
from app.mobitex.encoding import measure


def _reply(source: str) -> Reply:
    return Reply(source, "flows/t.toml: replies.accepted", transliterate_text=False)


def test_a_reply_reading_only_the_option_is_rendered_once_per_option() -> None:
    reply = _reply("Dziękujemy! Głos na {{ option }} przyjęty.")
    a1 = reply.sms({"option": "A", "sender": "48600000001", "text": "GLOS A"}, 2)
    a2 = reply.sms({"option": "A", "sender": "48600000002", "text": "glos a"}, 2)
    b = reply.sms({"option": "B", "sender": "48600000003", "text": "GLOS B"}, 2)
    assert a1 == a2 == ("Dziękujemy! Głos na A przyjęty.", measure("Dziękujemy! Głos na A przyjęty."))
    assert b[0] == "Dziękujemy! Głos na B przyjęty."
    assert len(reply._memo) == 2  # one entry per option: the sender is not read


def test_a_reply_that_quotes_the_sender_differs_per_phone() -> None:
    reply = _reply("Numer {{ sender }}: dziękujemy.")
    assert reply.sms({"sender": "48600000001"}, 1)[0] == "Numer 48600000001: dziękujemy."
    assert reply.sms({"sender": "48600000002"}, 1)[0] == "Numer 48600000002: dziękujemy."


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sms_templates, "_MEMO_SIZE", 8)
    reply = _reply("Numer {{ sender }}")
    for n in range(20):
        assert reply.sms({"sender": str(n)}, 1)[0] == f"Numer {n}"
        assert len(reply._memo) <= 8


def test_an_echo_is_cut_to_the_parts_and_the_limit_is_part_of_the_memo() -> None:
    reply = _reply("Napisałeś: {{ text }}")
    long = "x" * 400
    one, m1 = reply.sms({"text": long}, 1)
    two, m2 = reply.sms({"text": long}, 2)
    assert m1.parts == 1 and one.endswith("…")
    assert m2.parts == 2 and len(two) > len(one)
    assert m1 == measure(one) and m2 == measure(two)


def test_globals_and_unhashable_values_render_without_the_memo() -> None:
    reply = _reply("{% for i in range(2) %}{{ answers[i] }} {% endfor %}")
    assert reply.sms({"answers": ["tak", "nie"]}, 1)[0] == "tak nie"
    assert reply.sms({"answers": ["nie", "tak"]}, 1)[0] == "nie tak"
    assert reply._memo == {}


def test_a_render_error_is_not_remembered() -> None:
    reply = _reply("{{ 1 // n }}")
    with pytest.raises(FlowFileError, match="cannot render: ZeroDivisionError"):
        reply.sms({"n": 0}, 1)
    assert reply.sms({"n": 1}, 1)[0] == "1"
    with pytest.raises(FlowFileError):
        reply.sms({"n": 0}, 1)
