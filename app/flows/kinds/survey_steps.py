"""The answer types of survey steps: each turns a reply into the answer kept, or refuses it."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from app.flows.matching import words
from app.mobitex.mo_form import normalise_number

StepId = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
_INTEGER = re.compile(r"[+-]?\d{1,9}")
_EMAIL = re.compile(r"[\w.%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"):
    """One question; ``parse`` turns a reply into the stored answer, or None when it is invalid."""

    id: StepId
    ask: str
    retry: str | None = None  # this step's own re-ask; else the survey's ``retry``

    def parse(self, text: str) -> str | None:
        raise NotImplementedError

    def sample_answer(self) -> str:
        raise NotImplementedError


class IntegerStep(Step, frozen=True, kw_only=True, tag="integer"):
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min: {self.min} is greater than max = {self.max}; swap them")

    def parse(self, text: str) -> str | None:
        if not _INTEGER.fullmatch(number := text.strip().rstrip(".!")):
            return None
        n = int(number)
        too_low, too_high = self.min is not None and n < self.min, self.max is not None and n > self.max
        return None if too_low or too_high else str(n)

    def sample_answer(self) -> str:
        return str(self.max if self.max is not None else self.min if self.min is not None else 10)


class ChoiceStep(Step, frozen=True, kw_only=True, tag="choice"):
    choices: dict[str, list[str]]  # answer → aliases, folded like keywords

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError('choices: give at least two, e.g. { TAK = ["T"], NIE = ["N"] }')
        owner: dict[str, str] = {}
        for choice, aliases in self.choices.items():
            for alias in [choice, *aliases]:
                if not (key := folded(alias)):
                    raise ValueError(f"choices.{choice}: alias {alias!r} has no letters or digits")
                if owner.setdefault(key, choice) != choice:
                    raise ValueError(f"choices.{choice}: alias {alias!r} is already used by {owner[key]}")

    def aliases(self) -> dict[str, str]:
        return {folded(a): choice for choice, aliases in self.choices.items() for a in [choice, *aliases]}

    def parse(self, text: str) -> str | None:
        return self.aliases().get(folded(text))

    def sample_answer(self) -> str:
        return max(self.choices, key=len)


class TextStep(Step, frozen=True, kw_only=True, tag="text"):
    max_length: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 160

    def parse(self, text: str) -> str | None:
        value = " ".join(text.split())
        return value if 0 < len(value) <= self.max_length else None

    def sample_answer(self) -> str:
        return "Bardzo dobry program"[: self.max_length]


class PhoneStep(Step, frozen=True, kw_only=True, tag="phone"):
    def parse(self, text: str) -> str | None:
        number = normalise_number(text.strip())
        return number if number.isdigit() and 9 <= len(number) <= 15 else None

    def sample_answer(self) -> str:
        return "48600123456"


class EmailStep(Step, frozen=True, kw_only=True, tag="email"):
    def parse(self, text: str) -> str | None:
        value = text.strip().rstrip(".")
        if len(value) > 254 or not _EMAIL.fullmatch(value):
            return None
        local, domain = value.rsplit("@", 1)
        return f"{local}@{domain.lower()}"

    def sample_answer(self) -> str:
        return "jan.kowalski@example.pl"


AnyStep = IntegerStep | ChoiceStep | TextStep | PhoneStep | EmailStep


def folded(text: str) -> str:
    """``Tak!`` → ``TAK``, ``nie  wiem`` → ``NIE WIEM``: answers compare like keywords."""
    return " ".join(words(text))
