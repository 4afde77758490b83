"""Who a message may go to: a mobile number, checked against the numbering plans (``phonenumbers``).

Applications and operators type numbers in every form (``+48 600 123 456``, ``0048…``, ``600 123
456``); a number without a country is Polish, since Mobitex is a Polish gateway. Only numbers a
mobile phone can have are taken: a landline or a number with a digit too many would be queued,
paid for and refused by Mobitex (or never arrive). The MO path keeps the fast digits-only
normaliser: it stores what the gateway sent, and this check is for numbers people type.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from app.errors import InvalidSend

DEFAULT_REGION = "PL"
_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_KINDS = {
    PhoneNumberType.FIXED_LINE: "a landline",
    PhoneNumberType.TOLL_FREE: "a toll-free line",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate line",
    PhoneNumberType.SHARED_COST: "a shared-cost line",
    PhoneNumberType.VOIP: "a VoIP line",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (forwarding) number",
    PhoneNumberType.PAGER: "a pager",
    PhoneNumberType.UAN: "a company's central number",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
}
_EXAMPLE = "give a mobile number, e.g. 48600123456 or +48 600 123 456"


def mobile_number(value: str, field: str = "to") -> str:
    """``value`` as Mobitex takes it (international digits, ``48600123456``), or :class:`InvalidSend`
    naming the number, what is wrong with it, and ``field``."""
    try:
        number = phonenumbers.parse(value, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidSend(f"{field}: {value!r} is not a phone number; {_EXAMPLE}") from None
    digits = phonenumbers.format_number(number, PhoneNumberFormat.E164).removeprefix("+")
    if not phonenumbers.is_valid_number(number):
        raise InvalidSend(
            f"{field}: {value!r} is not a phone number (read as +{digits}, which no numbering plan "
            f"has); {_EXAMPLE}"
        )
    kind = phonenumbers.number_type(number)
    if kind not in _MOBILE:
        what = _KINDS.get(kind, "not a mobile number")
        raise InvalidSend(f"{field}: {value!r} is {what} (+{digits}), which cannot get SMS; {_EXAMPLE}")
    return digits
