"""One logging set-up for every process: our lines, uvicorn's and the libraries', in one format.

Called once by the entry points (``serve``, ``worker`` and each ``--workers`` process); Litestar's and
uvicorn's own logging configurations are turned off so that nothing resets the level afterwards.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec

from app.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# uvicorn's loggers carry their own handlers when uvicorn configured them: ours replace them.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: time (UTC), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure_logging(settings: Settings) -> None:
    """Send every log line to stderr in SMSFLOWS_LOG_FORMAT, at SMSFLOWS_LOG_LEVEL."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Alembic narrates every migration step at INFO; that is start-up noise unless debugging.
    logging.getLogger("alembic").setLevel(settings.log_level if settings.log_level == "DEBUG" else "WARNING")
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
