"""Pseudonyms and masks for phone numbers: what stands for a number where the number must not be.

A pseudonym is a keyed hash (``SMSFLOWS_PSEUDONYM_KEY``): the same phone always gets the same
one, so counts stay exact after a number is erased, and without the key nobody can tell whose
it is. Phone numbers are digits; a pseudonym starts with a letter, so the two never mix up.
"""

from __future__ import annotations

import hashlib
import hmac

from app.errors import SmsflowsError

PSEUDONYM_PREFIX = "p"


class PseudonymKeyMissing(SmsflowsError):
    """Draws and erasure need the key that turns phone numbers into pseudonyms."""

    status_code = 503


def pseudonym(key: str | None, phone: str) -> str:
    """``p`` and 16 hex digits of HMAC-SHA256(key, phone): the same person always gets the same
    pseudonym, and without the key nobody can tell whose it is. A pseudonym maps to itself, so
    entries whose phone was already erased keep their id."""
    if phone.startswith(PSEUDONYM_PREFIX):
        return phone
    if not key:
        raise PseudonymKeyMissing(
            "SMSFLOWS_PSEUDONYM_KEY is not set: set it to a long random secret, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'`, and keep it: entry ids "
            "and erased numbers depend on it"
        )
    digest = hmac.new(key.encode(), phone.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:16]


def mask(phone: str) -> str:
    """``48600123456`` → ``48600***456``; an erased number shows as ``(erased)``."""
    if phone.startswith(PSEUDONYM_PREFIX):
        return "(erased)"
    if len(phone) <= 6:
        return "***"
    return f"{phone[:5]}***{phone[-3:]}"
