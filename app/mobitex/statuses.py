"""The status codes of Mobitex's sms.php and balance.php: what each means and what to do about it.

Each code says whether the message went through (success), will fail the same way if resent
(permanent), or may go through later (transient), so the outbox knows whether to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

import msgspec


class Outcome(StrEnum):
    """What a status means for the message that got it."""

    SUCCESS = "success"
    PERMANENT = "permanent"
    """Resending the same request fails the same way: someone must fix the account, sender or text."""
    TRANSIENT = "transient"
    """Mobitex failed on its side; the same request may succeed later."""


class Status(msgspec.Struct, frozen=True):
    """One documented status code."""

    code: str
    meaning: str
    outcome: Outcome
    advice: str = ""
    """What the operator should do, written to follow the meaning in an error message."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS


ACCEPTED = "002"
"""The answer to a message Mobitex took; 003-010 come later, in delivery reports."""

_S, _P, _T = Outcome.SUCCESS, Outcome.PERMANENT, Outcome.TRANSIENT
_TOO_LONG = "shorten the text to at most 3 parts (459 GSM-7 characters, or 201 with Polish letters)"

_ALL = (
    Status("002", "accepted by the service", _S),
    Status("003", "sent to the SMS centre", _S),
    Status("004", "delivered", _S),
    # Delivery reports: 005 is still on its way; 007 and 010 are final failures of one delivery,
    # and sending again is a new message, not a retry.
    Status("005", "intermediate status (see the err parameter)", _S),
    Status("007", "delivery error (see the err parameter)", _P, "the phone could not be reached"),
    Status("010", "expired: could not be delivered", _P, "the phone was unreachable until the SMS expired"),
    Status(
        "001",
        "no authorisation: wrong login or password",
        _P,
        "check SMSFLOWS_MOBITEX_USER and SMSFLOWS_MOBITEX_PASSWORD (the plain one: smsflows sends its MD5)",
    ),
    Status("103", "text missing or incomplete", _P, "the message text must not be empty"),
    Status(
        "104",
        "sender field wrong or missing",
        _P,
        "set SMSFLOWS_MOBITEX_FROM to a sender of the account: up to 16 digits or up to 11 letters/digits",
    ),
    Status("105", "text too long", _P, _TOO_LONG),
    Status(
        "106", "number wrong or missing", _P, "give the recipient in international form, e.g. 48600123456"
    ),
    Status("107", "wrong message type", _P, "use sms, concat, unicode or unicode_concat"),
    Status("110", "message type not supported", _P, "ask Mobitex to enable this message type on the account"),
    Status("113", "text too long", _P, _TOO_LONG),  # the code before 2012; 105 since
    Status(
        "114",
        "sender not authorised",
        _P,
        "authorise the sender in the Mobitex panel, or set SMSFLOWS_MOBITEX_FROM to one that is",
    ),
    Status(
        "201", "system error", _T, "Mobitex failed on its side; retry later, and contact Mobitex if it lasts"
    ),
    # Permanent for the message (retrying burns nothing but stays refused), yet the fix is an
    # operator's top-up, after which the refused messages can be resent.
    Status(
        "202", "no funds on the account", _P, "top up the Mobitex account, then resend the refused messages"
    ),
    Status("204", "account inactive", _P, "the Mobitex account is inactive: contact Mobitex"),
    Status("205", "destination network blocked", _P, "the recipient's network is blocked for this account"),
    Status(
        "206",
        "no authorisation for the calling IP address",
        _P,
        "allow this server's public IP address in the account's settings in the Mobitex panel",
    ),
    Status("301", "message identifier missing or wrong", _P, "the message id given to Mobitex is wrong"),
)

STATUSES: Mapping[str, Status] = MappingProxyType({s.code: s for s in _ALL})
"""Every documented code, by its three-digit string."""


def describe(code: str) -> Status:
    """The status for ``code`` (``"2"`` and ``"002"`` alike); unknown codes are permanent.

    A well-formed line with a code we do not know came from Mobitex itself and refused the
    message for a reason we cannot judge; retrying it blindly could send the same SMS twice.
    """
    code = code.strip().zfill(3)
    known = STATUSES.get(code)
    if known is not None:
        return known
    return Status(code, "unknown status", Outcome.PERMANENT, "look the code up with Mobitex support")
