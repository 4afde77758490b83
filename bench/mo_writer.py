"""The writer's transaction alone: MO batches stored and voted on in-process, without HTTP.

Builds the group-commit writer on a fresh SQLite database with the vote flow of
``bench/mo_ingest.py`` and runs batches of new messages (each an accepted vote with a queued
reply) through the same transaction the service runs, then checks the stored rows. It prints
CPU microseconds per message; ``--profile`` adds where that time goes (cProfile). For counts
that do not move with the machine's load, run it under callgrind with ``--callgrind``: the
counters are zeroed after the warm-up batches and dumped after the measured ones.

    .venv/bin/python bench/mo_writer.py [--batches 300] [--size 32] [--profile]
    valgrind --tool=callgrind .venv/bin/python bench/mo_writer.py --callgrind --batches 30
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import pstats
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mo_ingest import VOTE_FLOW
from sqlalchemy import text

from app.db.engine import create_engine, create_sqlite_writer_engine
from app.db.migrate import upgrade
from app.db.models import utcnow
from app.flows.loader import load_dir
from app.ingest.writer import GroupWriter, _merge_duplicates, message_row
from app.mobitex.mo_form import MoMessage
from app.settings import load_settings

WARM_UP = 20  # batches run before measuring: statements compiled, caches filled


def callgrind(command: str) -> None:
    """Ask the callgrind running this process to zero or dump its counters, and wait for it."""
    control = subprocess.Popen(["callgrind_control", command, str(os.getpid())], stdout=subprocess.DEVNULL)
    while control.poll() is None:
        time.sleep(0.02)  # callgrind acts on the command while this process runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=300, help="batches measured")
    parser.add_argument("--size", type=int, default=32, help="messages per batch")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured batches")
    parser.add_argument("--callgrind", action="store_true", help="zero and dump callgrind's counters")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smsflows-writer-") as tmp:
        base = Path(tmp)
        (base / "flows").mkdir()
        (base / "flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
        settings = load_settings(
            {
                "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{base / 'smsflows.db'}",
                "SMSFLOWS_FLOWS_DIR": str(base / "flows"),
                "SMSFLOWS_SQLITE_SYNCHRONOUS": "NORMAL",  # the disk's fsync is not the subject here
            },
            None,
        )
        engine = create_engine(settings)
        asyncio.run(upgrade(engine))
        asyncio.run(engine.dispose())
        sync = create_sqlite_writer_engine(settings)
        flows = load_dir(base / "flows")
        flows.replies_per_day = settings.replies_per_day
        writer = GroupWriter(engine, flows=lambda: flows, sync_engine=sync)
        phones = itertools.count(10**7)

        def batch() -> list[dict[str, Any]]:
            now = utcnow()
            return [
                message_row(
                    MoMessage(
                        sms_id=secrets.token_hex(16),
                        number="70120",
                        sender=f"486{next(phones):08d}",
                        text="GLOS A",
                        time=int(time.time()),
                        smcsc="48601000310",
                    ),
                    raw_body=b"x" * 120,
                    charset="utf-8",
                    client_ip="127.0.0.1",
                    received_at=now,
                )
                for _ in range(args.size)
            ]

        batches = [batch() for _ in range(WARM_UP + args.batches)]

        def run(rows: list[list[dict[str, Any]]]) -> None:
            for messages in rows:
                conn = sync.connect()
                conn.begin()
                writer._transaction(conn, _merge_duplicates(messages), [])
                conn.commit()
                conn.close()

        run(batches[:WARM_UP])
        if args.callgrind:
            callgrind("--zero")
        profile = cProfile.Profile() if args.profile else None
        cpu = time.process_time()
        if profile is not None:
            profile.enable()
        run(batches[WARM_UP:])
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu
        if args.callgrind:
            callgrind("--dump")
        measured = args.batches * args.size
        print(f"{measured} messages in batches of {args.size}: {cpu / measured * 1e6:.1f} µs CPU per message")
        with sync.connect() as conn:
            counts = {
                table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("inbound_messages", "votes", "outbox", "flow_events")
            }
        sync.dispose()
        expected = (WARM_UP + args.batches) * args.size
        print(", ".join(f"{table} {n}" for table, n in counts.items()))
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        if any(n != expected for n in counts.values()):
            raise SystemExit(f"MISMATCH: every table should hold {expected} rows")


if __name__ == "__main__":
    main()
