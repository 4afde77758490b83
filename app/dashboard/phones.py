"""Phone numbers as the signed-in person may read them: whole for operators and admins, masked
(``48600***456``, an erased number as ``(erased)``) for viewers, who read results and messages
only. Pages (the templates' ``phone``, ``phone_text``, ``phone_json`` and ``answer`` filters) and
CSV exports all show numbers through this module, so an export never tells a viewer more than the
page it came from.

Three shapes hold a number: a field that is one (a sender, a phone-step answer), a sentence the
service wrote about one (a send error, why an answer matched nothing) and JSON (a decision's
detail, a message's ``data``), where any string may be one or quote one. Message texts are the
phone's own words and are shown as written, like on every message page.
"""

from __future__ import annotations

import re
from typing import Any

from app.dashboard.auth import SignedIn
from app.mobitex.mo_form import normalise_number
from app.privacy.pseudonyms import mask

# A number as written in a sentence or a JSON string: 9 to 15 digits, together or in groups of
# two or three (``+48 600 123 456``), never part of a longer word or number. Dates and times
# (``2026-12-02 15:10``) do not match: their first group has four digits.
_NUMBER = re.compile(r"(?<![\w+])(?:\+?\d{9,15}|(?:\+?\d{2,3}|00\d{2})(?:[ -]\d{2,3}){2,5})(?!\w)")


def sees_whole_numbers(user: SignedIn | None) -> bool:
    return user is not None and user.may("operator")


def shown_phone(user: SignedIn | None, phone: str | None) -> str:
    if not phone:
        return ""
    return phone if sees_whole_numbers(user) else mask(phone)


def _masked_in(text: str) -> str:
    def one(found: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", found.group())
        return mask(normalise_number(found.group())) if 9 <= len(digits) <= 15 else found.group()

    return _NUMBER.sub(one, text)


def shown_text(user: SignedIn | None, text: str | None) -> str:
    """A sentence the service wrote (an error, a reason) with every number in it shown as
    ``shown_phone`` shows one."""
    if not text:
        return ""
    return text if sees_whole_numbers(user) else _masked_in(text)


def shown_json(user: SignedIn | None, value: Any) -> Any:
    """JSON (a decision's detail, a message's data) with every number in its strings masked for
    a viewer; keys, other values and the shape stay as they are."""
    if sees_whole_numbers(user):
        return value
    return _masked_json(value)


def _masked_json(value: Any) -> Any:
    if isinstance(value, str):
        return _masked_in(value)
    if isinstance(value, dict):
        return {key: _masked_json(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_masked_json(v) for v in value]
    return value


def shown_answer(user: SignedIn | None, step_type: str | None, value: str | None) -> str:
    """A survey answer: a phone step's is a number; one of a step the flow file no longer has
    (``step_type`` None) is read like a sentence, its numbers masked; other answers are the
    phone's own words."""
    if step_type == "phone":
        return shown_phone(user, value)
    if step_type is None:
        return shown_text(user, value)
    return value or ""
