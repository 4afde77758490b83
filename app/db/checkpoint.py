"""SQLite WAL checkpoints in a thread of their own, off the group-commit writer's commits.

With its default ``wal_autocheckpoint`` SQLite runs a checkpoint inside the commit that takes the
WAL past 1000 pages: that commit then also copies the pages into the database file and fsyncs it,
while every request of its batch, and of the batches queued behind it, waits. A vote writes about
four pages per message, so under load that was every few commits. Here a checkpointer with its own
connection copies them instead, while the writer goes on committing (WAL lets both run at once).

The WAL file is written from its start again only by a transaction that began once all of it was
copied; under steady load the writer's next transaction has nearly always begun by the time the
checkpointer is done. So the writer keeps an automatic checkpoint of its own, at
:data:`WRITER_AUTOCHECKPOINT` pages: run between two of its transactions, it copies only what
came since the checkpointer's last pass, and its next transaction starts the WAL over. That keeps
the WAL under ``WRITER_AUTOCHECKPOINT`` pages, as SQLite's default keeps it under 1000.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger("smsflows.db")

# The writer's own automatic checkpoint, in pages of 4 KiB: the WAL stays near 16 MB, and the
# writer's commits checkpoint a quarter as often as with SQLite's default, copying little.
WRITER_AUTOCHECKPOINT = 4000
# After a checkpoint, wait this long before the next one: the pages of many commits are copied
# in one pass (a page that several commits rewrote, an index leaf, only once), and what the
# writer's own checkpoint has left to copy is at most this long's worth of commits.
GAP_SECONDS = 0.1


class WalCheckpointer:
    """PASSIVE checkpoints of one SQLite database, run by a thread woken by the writer's commits.

    PASSIVE never waits for a lock nor blocks a reader or the writer: what it cannot copy now
    (pages a reader still sees) it copies on a later run.
    """

    def __init__(self, path: Path, synchronous: str, gap: float = GAP_SECONDS) -> None:
        self._path = path
        self._synchronous = synchronous
        self._gap = gap
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # checkpoints run
        self.last: tuple[int, int, int] | None = None  # (busy, WAL pages, of them in the database file)

    def watch(self, engine: Engine) -> None:
        """Wake up each time one of ``engine``'s connections is handed back, which the writer
        does after each batch's commit."""
        event.listen(engine, "checkin", self._on_checkin)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="smsflows-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the checkpoint it runs, if any; SQLite checkpoints what is left
        when the last connection to the database closes."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _on_checkin(self, _dbapi_conn: Any, _record: Any) -> None:
        self._wake.set()

    def checkpoint(self, db: sqlite3.Connection) -> None:
        """Copy what the WAL holds into the database file."""
        self.last = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1

    def connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")  # as every connection sets it; it opens the WAL
        # The checkpoint's fsyncs of the WAL and the database file follow this level too.
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        return db

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                if self._stopping.is_set():
                    return
                self._wake.clear()
                try:
                    # Opened once a commit happened: the database is there, in WAL mode.
                    db = db or self.connect()
                    self.checkpoint(db)
                    if self.last is not None and self.last[1] < 0:
                        # No WAL seen: the database was still empty; look again next time.
                        db.close()
                        db = None
                except sqlite3.Error as exc:  # the writer's own checkpoint bounds the WAL meanwhile
                    log.warning("WAL checkpoint failed, trying again after the next commit: %s", exc)
                if self._stopping.wait(self._gap):
                    return
        finally:
            if db is not None:
                db.close()
