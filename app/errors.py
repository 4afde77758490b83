"""The domain errors: each carries a message that tells the user what to do, and the HTTP status
the API answers it with (``status_code``). The API turns any of them into its JSON error
(``app/api/errors.py``), the CLI into one line on standard error (``app/cli/root.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class SmsflowsError(Exception):
    """Base of every error smsflows raises on purpose; ``extra`` are details a client can read
    (the API shows them as ``extra``)."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.extra = extra


class SettingsError(SmsflowsError):
    """A configuration value is missing or malformed; the message names the variable."""


class DatabaseUnavailable(SmsflowsError):
    """The database could not be reached or refused a write; the caller should retry later."""

    status_code = 503


class DatabaseBusy(DatabaseUnavailable):
    """The database rolled a write back, again and again, because of concurrent ones (deadlocks):
    it is up, so nothing waits for it to come back; the caller retries the same write later."""


class MigrationsPending(SmsflowsError):
    """The database schema is older than this version of smsflows."""

    status_code = 503


class InvalidMessage(SmsflowsError):
    """An inbound request does not carry a valid Mobitex MO message."""

    status_code = 400


class InvalidRequest(SmsflowsError):
    """A request (API parameters or body, command options) names something wrongly."""

    status_code = 400


class NotFound(SmsflowsError):
    """What the request names does not exist; the message says where to look."""

    status_code = 404


class Conflict(SmsflowsError):
    """The request contradicts what is already recorded (resolved meanwhile, used before...)."""

    status_code = 409


class FlowFileError(SmsflowsError):
    """A flow file is invalid; the message names the file, the field path and what is expected."""

    status_code = 422


class FlowError(SmsflowsError):
    """A flow could not act on a message; the message is kept as ``failed`` and can be replayed."""


class Unsendable(SmsflowsError):
    """A message cannot be sent as given: the number, the text (too long: by how much) or a field."""

    status_code = 422


class InvalidSend(Unsendable):
    """The message cannot be queued as given; the message names the field and what to change."""


class IdempotencyConflict(Conflict):
    """The idempotency key was already used for a different message."""


class CodeImportError(SmsflowsError):
    """The codes could not be imported; the message names the file or flow and what to fix."""

    status_code = 422


class GatewayError(SmsflowsError):
    """Mobitex did not take a request; ``status`` and ``meaning`` say why when Mobitex said it.

    ``status`` is the three-digit code of the answer (``"001"``, ``"202"``...), or None when no
    answer was read (network error, timeout, HTTP error, unreadable body).
    """

    status_code = 502

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
