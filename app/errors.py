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
