"""Outbound throughput: messages a second delivered to the fake Mobitex by 1, then 2 worker processes.

For each run the outbox of a fresh database is filled with N messages, each to its own number:
``identical`` texts (a vote reply: they travel in groups of up to 500 numbers a request) or
``personalised`` ones (one request each). The fake gateway runs as its own process, and
``smsflows worker --once`` processes send it all with the rate limits lifted. The rate is N over the
time from the first to the last ``sent_at``, so the workers' start-up is left out (the wall time
including it is printed too), and the workers' CPU per message (start-up included) is the figure a
busy machine moves least. Every run checks that every row is ``sent``, that the gateway received
each number exactly once, and that each row holds the Id the gateway gave its number.

    .venv/bin/python bench/outbound.py [--count 10000] [--texts identical,personalised]
                                       [--workers 1,2] [--concurrency 64] [--rounds 1]
                                       [--postgres postgresql+asyncpg://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.db.models import OutboxMessage
from app.outbox.table import outbox_row
from app.settings import load_settings

USER, PASSWORD, SENDER = "bench", "bench-pass", "SMSFLOWS"
VOTE_REPLY = "Dziękujemy, głos przyjęty!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def fake_gateway() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "fake-mobitex", "--port", str(port), "--user", USER,
               "--password", PASSWORD, "--sender", SENDER, "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/fake/messages")
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait()


@asynccontextmanager
async def fresh_database(postgres: str | None) -> AsyncIterator[str]:
    if postgres is None:
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"smsflows_bench_{secrets.token_hex(3)}"
    admin_dsn = make_url(postgres).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def environment(database_url: str, gateway: str) -> dict[str, str]:
    return os.environ | {
        "SMSFLOWS_DATABASE_URL": database_url,
        "SMSFLOWS_SEND_MODE": "mobitex",
        "SMSFLOWS_MOBITEX_URL": f"{gateway}/sms.php",
        "SMSFLOWS_MOBITEX_USER": USER,
        "SMSFLOWS_MOBITEX_PASSWORD": PASSWORD,
        "SMSFLOWS_MOBITEX_FROM": SENDER,
        "SMSFLOWS_SEND_RATE": "1000000",  # limits lifted: the bench measures the machinery
        "SMSFLOWS_SEND_RATE_PER_NUMBER": "1000000",
        "SMSFLOWS_LOG_LEVEL": "WARNING",
    }


async def fill(env: dict[str, str], count: int, identical: bool) -> None:
    engine = create_engine(load_settings(env, None))
    try:
        await upgrade(engine)
        now = datetime.now(UTC)
        rows = [
            outbox_row(to=f"48600{i:06d}", text=VOTE_REPLY if identical else f"Wiadomość {i}",
                       from_number="70120", flow=None, inbound_id=None, now=now)
            for i in range(count)
        ]  # fmt: skip
        async with engine.begin() as conn:
            for start in range(0, count, 1000):
                await conn.execute(insert(OutboxMessage), rows[start : start + 1000])
    finally:
        await engine.dispose()


async def results(env: dict[str, str]) -> tuple[dict[str, int], float, dict[str, str | None]]:
    """Rows by status, seconds from the first to the last send, and each number's Mobitex Id."""
    engine = create_engine(load_settings(env, None))
    o = OutboxMessage
    try:
        async with engine.connect() as conn:
            statuses = dict((await conn.execute(select(o.status, func.count()).group_by(o.status))).all())
            first, last = (await conn.execute(select(func.min(o.sent_at), func.max(o.sent_at)))).one()
            ids = dict((await conn.execute(select(o.to_number, o.mobitex_id))).all())
    finally:
        await engine.dispose()
    span = (last - first).total_seconds() if first and last else 0.0
    return statuses, span, ids


async def run(
    count: int, identical: bool, workers: int, concurrency: int, gateway: str, postgres: str | None
) -> tuple[bool, float, float]:
    """Whether every number was received once and holds its Id; messages/s; worker CPU ms/message."""
    async with fresh_database(postgres) as database_url:
        env = environment(database_url, gateway)
        await fill(env, count, identical)
        async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
            await http.delete("/fake/messages")
        started, cpu_before = time.perf_counter(), _children_cpu()
        command = [sys.executable, "-m", "app.cli", "worker", "--once", "--concurrency", str(concurrency)]
        processes = [
            await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE)
            for _ in range(workers)
        ]
        summaries = [(await p.communicate())[0].decode().strip() for p in processes]
        wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
        statuses, span, ids = await results(env)
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        messages = (await http.get("/fake/messages")).json()
    received = Counter(m["number"] for m in messages)
    once = set(received) == set(ids) and set(received.values()) == {1}
    once = once and {m["number"]: m["id"] for m in messages} == ids
    rate = (count - 1) / span if span else float("nan")
    backend = "PostgreSQL" if postgres else "SQLite"
    kind = "identical" if identical else "personalised"
    print(f"{backend:10} {kind:12} {workers} worker(s) × {concurrency}: {rate:7.0f} msg/s "
          f"({count} in {span:.2f} s; {wall:.2f} s with start-up; "
          f"worker CPU {cpu / count * 1000:.2f} ms/msg)  "
          f"statuses={statuses}  "
          f"exactly once: {'yes' if once else 'NO'}", flush=True)  # fmt: skip
    for i, summary in enumerate(summaries, 1):
        print(f"    worker {i}: {summary}")
    return once and statuses == {"sent": count}, rate, cpu / count * 1000


def _children_cpu() -> float:
    """User and system seconds of the child processes waited for so far (the workers, here)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--texts", default="identical,personalised", help="identical, personalised or both")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each case; the median is reported")
    parser.add_argument("--workers", default="1,2", help="worker process counts to run, comma-separated")
    parser.add_argument("--concurrency", type=int, default=64, help="requests each worker keeps in flight")
    parser.add_argument("--postgres", default=None, help="also run on this PostgreSQL server")
    args = parser.parse_args()
    ok = True
    medians = []
    with fake_gateway() as gateway:
        for postgres in [None, args.postgres] if args.postgres else [None]:
            for kind in args.texts.split(","):
                for workers in (int(w) for w in args.workers.split(",")):
                    rates, cpus = [], []
                    for _ in range(args.rounds):
                        fine, rate, cpu = asyncio.run(
                            run(args.count, kind == "identical", workers, args.concurrency, gateway, postgres)
                        )
                        ok &= fine
                        rates.append(rate)
                        cpus.append(cpu)
                    backend = "PostgreSQL" if postgres else "SQLite"
                    middle, low, high = statistics.median(rates), min(rates), max(rates)
                    cpu_range = f"{statistics.median(cpus):.2f} ms/msg ({min(cpus):.2f}-{max(cpus):.2f})"
                    medians.append(f"{backend:10} {kind:12} {workers} worker(s): {middle:7.0f} msg/s "
                                   f"(median of {len(rates)}, {low:.0f}-{high:.0f}); "
                                   f"worker CPU {cpu_range}")  # fmt: skip
    print("\n".join(["", *medians]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
