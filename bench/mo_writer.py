"""The writer's transaction alone: MO batches stored and voted on in-process, without HTTP.

Builds the group-commit writer with the vote flow of ``bench/mo_ingest.py`` on a fresh database
(SQLite, or with ``--postgres`` a PostgreSQL database of the run's own, created and dropped like
``bench/mo_ingest.py`` does) and runs batches of new messages (each an accepted vote with a
queued reply) through the same transaction the service runs, then checks the stored rows.

It prints CPU microseconds per batch and per message for each ``--size`` (comma-separated), on
PostgreSQL for the server's backend too (its /proc stat), and with several sizes a fit of
``fixed + per message × size``: what a batch costs whatever its size, and what each message
adds. ``--profile`` adds where the time goes (cProfile). For counts that do not move with the
machine's load, run it under callgrind with ``--callgrind``: the counters are zeroed after the
warm-up batches and dumped after the measured ones.

    .venv/bin/python bench/mo_writer.py [--batches 300] [--size 1,8,32,128] [--profile]
    .venv/bin/python bench/mo_writer.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    valgrind --tool=callgrind .venv/bin/python bench/mo_writer.py --callgrind --batches 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import os
import pstats
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mo_ingest import VOTE_FLOW, pg_database
from sqlalchemy import text

from app.db.engine import create_engine, create_sqlite_writer_engine
from app.db.migrate import upgrade
from app.db.models import utcnow
from app.flows.loader import FlowSet, load_dir
from app.ingest.writer import GroupWriter, _merge_duplicates, message_row
from app.mobitex.mo_form import MoMessage
from app.settings import Settings, load_settings

WARM_UP = 20  # batches run before measuring: statements compiled and prepared, caches filled
TABLES = ("inbound_messages", "votes", "outbox", "flow_events")
TICK = os.sysconf("SC_CLK_TCK")


def callgrind(command: str) -> None:
    """Ask the callgrind running this process to zero or dump its counters, and wait for it."""
    control = subprocess.Popen(["callgrind_control", command, str(os.getpid())], stdout=subprocess.DEVNULL)
    while control.poll() is None:
        time.sleep(0.02)  # callgrind acts on the command while this process runs


def process_cpu(pid: int) -> float:
    """User and system CPU seconds of another process (PostgreSQL's backend), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Batches:
    """New messages, each from a phone of its own: every one an accepted vote with a reply."""

    def __init__(self) -> None:
        self._phones = itertools.count(10**7)

    def make(self, size: int, count: int) -> list[list[dict[str, Any]]]:
        return [_merge_duplicates(self._batch(size)) for _ in range(count)]

    def _batch(self, size: int) -> list[dict[str, Any]]:
        now = utcnow()
        return [
            message_row(
                MoMessage(
                    sms_id=secrets.token_hex(16),
                    number="70120",
                    sender=f"486{next(self._phones):08d}",
                    text="GLOS A",
                    time=int(time.time()),
                    smcsc="48601000310",
                ),
                raw_body=b"x" * 120,
                charset="utf-8",
                client_ip="127.0.0.1",
                received_at=now,
            )
            for _ in range(size)
        ]


class Measure:
    """CPU of this process (and of a backend) over the measured batches, with an optional profile."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: list[tuple[int, float, float | None]] = []  # size, service s, backend s

    @contextlib.contextmanager
    def measured(self, size: int, backend: int | None) -> Iterator[None]:
        if self.args.callgrind:
            callgrind("--zero")
        profile = cProfile.Profile() if self.args.profile else None
        db = process_cpu(backend) if backend is not None else 0.0
        cpu = time.process_time()
        if profile is not None:
            profile.enable()
        yield
        if profile is not None:
            profile.disable()
        cpu = time.process_time() - cpu
        db_cpu = process_cpu(backend) - db if backend is not None else None
        if self.args.callgrind:
            callgrind("--dump")
        self.results.append((size, cpu, db_cpu))
        batches = self.args.batches
        line = f"size {size:4d}: service {_per(cpu, batches, size)}"
        if db_cpu is not None:
            line += f" | backend {_per(db_cpu, batches, size)}"
        print(line, flush=True)
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)

    def fit(self) -> None:
        """Least squares of CPU per batch against its size: a fixed part and a part per message."""
        if len({size for size, _, _ in self.results}) < 2:
            return
        for name, column in (("service", 1), ("backend", 2)):
            points = [(r[0], cpu / self.args.batches * 1e6) for r in self.results if (cpu := r[column])]
            if not points:
                continue
            n = len(points)
            mean_x = sum(x for x, _ in points) / n
            mean_y = sum(y for _, y in points) / n
            slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
                (x - mean_x) ** 2 for x, _ in points
            )
            print(f"{name}: fixed {mean_y - slope * mean_x:6.0f} µs per batch + {slope:6.1f} µs per message")


def _per(seconds: float, batches: int, size: int) -> str:
    return f"{seconds / batches * 1e6:8.0f} µs/batch {seconds / batches / size * 1e6:7.1f} µs/msg"


def sqlite_run(settings: Settings, flows: FlowSet, measure: Measure, sizes: list[int]) -> int:
    engine = create_engine(settings)
    asyncio.run(upgrade(engine))
    asyncio.run(engine.dispose())
    sync = create_sqlite_writer_engine(settings)
    writer = GroupWriter(engine, flows=lambda: flows, sync_engine=sync)
    made = Batches()
    stored = 0

    def run(rows: list[list[dict[str, Any]]]) -> None:
        for messages in rows:
            writer._sqlite_batch(messages, [], [])  # what the writer's thread runs for a batch

    for size in sizes:
        batches = made.make(size, WARM_UP + measure.args.batches)
        run(batches[:WARM_UP])
        with measure.measured(size, None):
            run(batches[WARM_UP:])
        stored += len(batches) * size
    with sync.connect() as conn:
        counts = [conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() for table in TABLES]
    sync.dispose()
    return check(counts, stored)


async def postgres_run(settings: Settings, flows: FlowSet, measure: Measure, sizes: list[int]) -> int:
    engine = create_engine(settings)
    await upgrade(engine)
    writer = GroupWriter(engine, flows=lambda: flows)
    lane = writer._lanes[0]  # one lane: the cost of a batch, not how lanes overlap
    made = Batches()
    stored = 0

    async def run(rows: list[list[dict[str, Any]]]) -> None:
        for messages in rows:
            await writer._write_postgres(lane, messages, [], ())

    try:
        for size in sizes:
            batches = made.make(size, WARM_UP + measure.args.batches)
            await run(batches[:WARM_UP])
            assert lane.pg_conn is not None  # the lane's own, kept from batch to batch
            raw = await lane.pg_conn.get_raw_connection()
            backend = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
            with measure.measured(size, backend):
                await run(batches[WARM_UP:])
            stored += len(batches) * size
        await writer._drop_pg_connection(lane)
        async with engine.connect() as conn:
            counts = [
                (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one() for table in TABLES
            ]
    finally:
        await engine.dispose()
    return check(counts, stored)


def check(counts: list[int], expected: int) -> int:
    print(", ".join(f"{table} {n}" for table, n in zip(TABLES, counts, strict=True)))
    if any(n != expected for n in counts):
        raise SystemExit(f"MISMATCH: every table should hold {expected} rows")
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=300, help="batches measured per size")
    parser.add_argument("--size", default="32", help="messages per batch; comma-separated for several")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the measured batches")
    parser.add_argument("--callgrind", action="store_true", help="zero and dump callgrind's counters")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run on PostgreSQL: a server where the run may create and drop a database of its own "
        "(e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.size.split(",")]
    measure = Measure(args)
    with tempfile.TemporaryDirectory(prefix="smsflows-writer-") as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        (base / "flows").mkdir()
        (base / "flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
        if args.postgres:
            url = stack.enter_context(pg_database(args.postgres, "writer"))
        else:
            url = f"sqlite+aiosqlite:///{base / 'smsflows.db'}"
        settings = load_settings(
            {
                "SMSFLOWS_DATABASE_URL": url,
                "SMSFLOWS_FLOWS_DIR": str(base / "flows"),
                "SMSFLOWS_SQLITE_SYNCHRONOUS": "NORMAL",  # the disk's fsync is not the subject here
            },
            None,
        )
        flows = load_dir(base / "flows")
        flows.replies_per_day = settings.replies_per_day
        if args.postgres:
            asyncio.run(postgres_run(settings, flows, measure, sizes))
        else:
            sqlite_run(settings, flows, measure, sizes)
        measure.fit()


if __name__ == "__main__":
    main()
