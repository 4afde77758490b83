"""Phone numbers as the signed-in person may read them: whole for operators and admins, masked
(``48600***456``, an erased number as ``(erased)``) for viewers, who read results and messages
only. Pages (the templates' ``phone`` filter) and CSV exports both show numbers through
``shown_phone``, so an export never tells a viewer more than the page it came from."""

from __future__ import annotations

from app.dashboard.auth import SignedIn
from app.privacy.pseudonyms import mask


def sees_whole_numbers(user: SignedIn | None) -> bool:
    return user is not None and user.may("operator")


def shown_phone(user: SignedIn | None, phone: str | None) -> str:
    if not phone:
        return ""
    return phone if sees_whole_numbers(user) else mask(phone)
