"""The domain errors: each carries a message that tells the user what to do."""

from __future__ import annotations


class SmsflowsError(Exception):
    """Base of every error smsflows raises on purpose."""


class SettingsError(SmsflowsError):
    """A configuration value is missing or malformed; the message names the variable."""


class DatabaseUnavailable(SmsflowsError):
    """The database could not be reached or refused a write; the caller should retry later."""


class InvalidMessage(SmsflowsError):
    """An inbound request does not carry a valid Mobitex MO message."""


class MigrationsPending(SmsflowsError):
    """The database schema is older than this version of smsflows."""


class FlowFileError(SmsflowsError):
    """A flow file is invalid; the message names the file, the field path and what is expected."""


class FlowError(SmsflowsError):
    """A flow could not act on a message; the message is kept as ``failed`` and can be replayed."""


class GatewayError(SmsflowsError):
    """Mobitex did not take a request; ``status`` and ``meaning`` say why when Mobitex said it.

    ``status`` is the three-digit code of the answer (``"001"``, ``"202"``...), or None when no
    answer was read (network error, timeout, HTTP error, unreadable body).
    """

    def __init__(self, message: str, *, status: str | None = None, meaning: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.meaning = meaning


class PermanentGatewayError(GatewayError):
    """Sending the same request again fails the same way: fix the account, sender, number or text."""


class TransientGatewayError(GatewayError):
    """Mobitex could not be reached or failed on its side; the same request may succeed later."""


class GatewayNoAnswer(TransientGatewayError):
    """The request may have reached Mobitex, but no answer came (a timeout, a dropped connection).

    Mobitex may have taken the message: resending risks a second SMS, not resending risks none.
    """
