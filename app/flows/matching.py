"""Keyword matching: normalised words, and an index by (number, keyword) that never scans flows.

People type ``głos a``, ``GLOS:A``, ``  Głos  A!`` and mean the same thing, so matching works on
normalised words: upper case, Polish diacritics removed (Ł has no decomposition, so it is
mapped by hand), punctuation stripped from both ends of each word.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")
_SEPARATORS = re.compile(r"[\s:;,]+")
_HAND_MAPPED = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "SS"})
ANY_NUMBER = "*"


def fold(word: str) -> str:
    """``Głos!`` → ``GLOS``: upper case, no diacritics, no punctuation at the edges."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_HAND_MAPPED))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _EDGE_PUNCTUATION.sub("", bare).upper()


def words(text: str) -> list[str]:
    """The folded words of a message; ``GLOS:A`` is two words."""
    return list(_words(text))


@functools.lru_cache(maxsize=4096)  # during a vote most messages are one of a few texts
def _words(text: str) -> tuple[str, ...]:
    return tuple(w for w in (fold(part) for part in _SEPARATORS.split(text)) if w)


def rest_after_first_word(text: str) -> str:
    """The raw text after the keyword (for free-text answers and codes)."""
    parts = _SEPARATORS.split(text.strip(), maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def deletions(word: str) -> set[str]:
    """The word with any one letter removed: two words within one edit share one of these."""
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1] if diff else (0, 0)
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]  # a transposition
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass
class KeywordIndex(Generic[T]):
    """Maps (number, keyword) to candidates; ``*`` stands for flows that listen on every number.

    Exact lookups are dictionary hits. Typo-tolerant keywords are also filed under each of their
    one-letter deletions, so a near miss costs a handful of lookups, whatever the number of flows.
    """

    exact: dict[tuple[str, str], list[T]] = field(default_factory=dict)
    fuzzy: dict[tuple[str, str], list[tuple[str, T]]] = field(default_factory=dict)

    def add(self, numbers: Iterable[str], keyword: str, item: T, *, typo_tolerant: bool) -> None:
        for number in numbers:
            self.exact.setdefault((number, keyword), []).append(item)
            if typo_tolerant:
                for key in {keyword, *deletions(keyword)}:
                    self.fuzzy.setdefault((number, key), []).append((keyword, item))

    def lookup(self, number: str, keyword: str) -> list[T]:
        found = self.exact.get((number, keyword), []) + self.exact.get((ANY_NUMBER, keyword), [])
        if found or not self.fuzzy:
            return found
        seen: list[T] = []
        for key in {keyword, *deletions(keyword)}:
            for n in (number, ANY_NUMBER):
                for candidate, item in self.fuzzy.get((n, key), []):
                    if item not in seen and within_one_edit(candidate, keyword):
                        seen.append(item)
        return seen


def check_aliases(groups: Mapping[str, Sequence[str]], section: str, noun: str = "") -> None:
    """Each alias (the group's own name included) is one word and belongs to one group only.

    Raises ValueError("<section>.<group>: ...") for the flow file's error message.
    """
    owner: dict[str, str] = {}
    for name, aliases in groups.items():
        for alias in [name, *aliases]:
            key = fold(alias)
            if not key or " " in alias.strip():
                raise ValueError(
                    f"{section}.{name}: alias {alias!r} must be one word of letters or digits "
                    "(only the first word of the answer is compared)"
                )
            if owner.get(key, name) != name:
                raise ValueError(f"{section}.{name}: alias {alias!r} is already used by {noun}{owner[key]}")
            owner[key] = name


_ALIAS_TABLES: dict[int, tuple[Mapping[str, Sequence[str]], dict[str, str]]] = {}


def alias_table(groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Folded alias → group name, worked out once per loaded flow rather than once per message."""
    cached = _ALIAS_TABLES.get(id(groups))
    if cached is None or cached[0] is not groups:
        if len(_ALIAS_TABLES) > 256:  # old flow sets after many reloads
            _ALIAS_TABLES.clear()
        table = {fold(a): name for name, aliases in groups.items() for a in [name, *aliases]}
        cached = _ALIAS_TABLES[id(groups)] = (groups, table)
    return cached[1]
