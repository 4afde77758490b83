"""The canonical entry list and its SHA-256, pseudonyms and masked phones.

The hash is taken over pseudonymous entry ids, never over phone numbers: a record whose phones
are masked can still be checked by anyone, and the ids reveal nobody.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from app.privacy.pseudonyms import PSEUDONYM_PREFIX, PseudonymKeyMissing, mask, pseudonym

__all__ = [
    "PSEUDONYM_PREFIX",
    "PseudonymKeyMissing",
    "canonical",
    "list_sha256",
    "mask",
    "pseudonym",
    "seed_sha256",
]


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
