"""The canonical entry list and its SHA-256, pseudonyms and masked phones.

The hash is taken over pseudonymous entry ids, never over phone numbers: a record whose phones
are masked can still be checked by anyone, and the ids reveal nobody.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from app.errors import SmsflowsError

PSEUDONYM_PREFIX = "p"


class PseudonymKeyMissing(SmsflowsError):
    """Draws and erasure need the key that turns phone numbers into pseudonyms."""


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


def canonical(ids: Iterable[str]) -> list[str]:
    """Entry ids in canonical order: sorted by their UTF-8 bytes (ids are ASCII)."""
    return sorted(ids, key=lambda i: i.encode("utf-8"))


def list_sha256(ids: Iterable[str]) -> str:
    """SHA-256 of the ids, each followed by a line feed, in the order given (hex)."""
    h = hashlib.sha256()
    for entry_id in ids:
        h.update(entry_id.encode("utf-8") + b"\n")
    return h.hexdigest()


def seed_sha256(seed: str) -> str:
    """The commitment to a seed: SHA-256 of its UTF-8 bytes (hex)."""
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()


def mask(phone: str) -> str:
    """``48600123456`` → ``48600***456``; an erased number shows as ``(erased)``."""
    if phone.startswith(PSEUDONYM_PREFIX):
        return "(erased)"
    if len(phone) <= 6:
        return "***"
    return f"{phone[:5]}***{phone[-3:]}"
