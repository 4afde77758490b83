"""The running flow set: swapped whole on reload, never replaced by a broken one."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from app.db.models import utcnow
from app.errors import FlowFileError
from app.flows.loader import FlowSet, load_dir

log = logging.getLogger("smsflows.flows")


class LiveFlows:
    def __init__(self, directory: Path, *, replies_per_day: int = 0) -> None:
        self.directory = directory
        self.replies_per_day = replies_per_day
        self.current: FlowSet = self._load()  # at start-up a broken file stops the service
        self.loaded_at: datetime = utcnow()
        self.last_error: str | None = None

    def reload(self) -> str | None:
        """Load the folder again; on error keep the running set and return the error."""
        try:
            fresh = self._load()
        except FlowFileError as exc:
            self.last_error = str(exc)
            log.error("flows not reloaded, the running set stays:\n%s", exc)
            return self.last_error
        self.current, self.loaded_at, self.last_error = fresh, utcnow(), None
        log.info("flows reloaded: %d flow(s) from %s", len(fresh.flows), self.directory)
        return None

    def _load(self) -> FlowSet:
        return replace(load_dir(self.directory), replies_per_day=self.replies_per_day)
