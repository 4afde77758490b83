"""MO ingest throughput: the real webhook (SQLite, synchronous=FULL) next to a bare form-parsing app.

Both servers run as uvicorn subprocesses with the service's own uvicorn options; this process is the
load generator: keep-alive HTTP/1.1 connections over loopback, one unique sms_id per request. The
ratio MO/bare says what storing a message durably costs on top of receiving the form.

    .venv/bin/python bench/mo_ingest.py [--duration 5] [--rounds 3] [--concurrency 1,8,32]
                                        [--client raw|httpx]

The targets take turns, round after round, and the table shows each one's median round with the
slowest and fastest beside it: on a shared machine a single run of each can be off by a third.

``--client raw`` (default) writes prebuilt requests on asyncio streams; ``httpx`` uses
httpx.AsyncClient, which costs several times more CPU per request (the machine has 2 cores, shared
with the server under test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar import Litestar, Request, Response, post

from app.mobitex.simulator import SimulationOptions, mo_body
from app.server import server_options
from app.settings import Settings, load_settings

PATH = "/mobitex/mo"
FORM = SimulationOptions(text="GLOS A")
CONTENT_TYPE = FORM.content_type


# --- the bare app: the floor any webhook that reads a form stands on ---------------------------------


@post(PATH, status_code=200)
async def bare_mo(request: Request[object, object, object]) -> Response[str]:
    await request.form()
    return Response("OK\n", media_type="text/plain")


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(Litestar([bare_mo]), host="127.0.0.1", port=port, **server_options(load_settings()))


# --- servers -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server(
    command: list[str], port: int, env: dict[str, str], cwd: Path, *, timeout: float = 30, quiet: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server subprocess until the block ends; uvicorn listens only once its lifespan started."""
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server {command} did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()  # SIGTERM: uvicorn shuts down gracefully, the writer commits what it holds
        proc.wait(timeout=timeout)


# --- load generation ---------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    concurrency: int
    seconds: float = 0.0
    client_cpu: float = 0.0  # CPU seconds this process (the load generator) spent
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return (self.ok + self.errors) / self.seconds if self.seconds else 0.0

    def ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)] * 1000 if ordered else math.nan


_PHONES = itertools.count(secrets.randbelow(10**7))


def body() -> bytes:
    # A new phone every time, so that with the vote flow every message is an accepted vote.
    sender = f"486{next(_PHONES):08d}"
    return mo_body(msgspec.structs.replace(FORM, sender=sender), secrets.token_hex(16), int(time.time()))


def content_length(head: list[bytes]) -> int:
    for line in head:
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    raise ConnectionError("answer without Content-Length")  # our servers always send one


async def raw_worker(port: int, deadline: float, run: Run) -> None:
    """One keep-alive connection sending prebuilt HTTP/1.1 requests, one at a time."""
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        "Content-Length: {}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            payload = body()
            started = time.perf_counter()
            writer.write(head.format(len(payload)).encode() + payload)
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            await reader.readexactly(content_length(lines))
            run.latencies.append(time.perf_counter() - started)
            if lines[0].split(b" ")[1] == b"200":
                run.ok += 1
            else:
                run.errors += 1
    finally:
        writer.close()


async def httpx_worker(client: httpx.AsyncClient, url: str, deadline: float, run: Run) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await client.post(url, content=body(), headers={"Content-Type": CONTENT_TYPE})
        run.latencies.append(time.perf_counter() - started)
        if response.status_code == 200:
            run.ok += 1
        else:
            run.errors += 1


async def load(port: int, run: Run, seconds: float, client: str) -> Run:
    """Keep ``run.concurrency`` requests in flight for ``seconds``; a failed connection is an error."""
    deadline = time.perf_counter() + seconds
    url = f"http://127.0.0.1:{port}{PATH}"
    tls = httpx.create_ssl_context()

    async def worker() -> None:
        # httpx: one client per connection, its best case (one pool slows down past a few connections).
        http = httpx.AsyncClient(timeout=30, verify=tls) if client == "httpx" else None
        try:
            while time.perf_counter() < deadline:
                try:
                    if http is None:
                        await raw_worker(port, deadline, run)
                    else:
                        await httpx_worker(http, url, deadline, run)
                except (OSError, asyncio.IncompleteReadError, httpx.HTTPError):
                    run.errors += 1
        finally:
            if http is not None:
                await http.aclose()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(run.concurrency)))
    run.seconds = time.perf_counter() - started
    run.client_cpu = time.process_time() - cpu
    return run


def run_loop(coro: Coroutine[Any, Any, Run]) -> Run:
    """A fresh event loop per run (uvloop when installed, as uvicorn uses on the server side)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- the benchmark -----------------------------------------------------------------------------------


VOTE_FLOW = """
id = "bench"
kind = "vote"
keywords = ["GLOS"]
[vote]
options = { A = ["ANNA"], B = ["BARTEK"] }
[replies]
accepted = "Dziękujemy! Głos na {{ option }} przyjęty."
repeat = "Twój głos już mamy."
"""


def service_env(database: Path, flows: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOWS_")}
    env.update(
        SMSFLOWS_FLOWS_DIR=str(flows),
        SMSFLOWS_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        SMSFLOWS_MO_ALLOWED_IPS="127.0.0.1",
        SMSFLOWS_SQLITE_SYNCHRONOUS="FULL",
        # Ingest alone: the replies stay queued (delivering them is measured by bench/outbound.py).
        SMSFLOWS_DISPATCHER="false",
        SMSFLOWS_LOG_LEVEL="WARNING",
    )
    return env


def print_settings(settings: Settings, client: str, duration: float, warmup: float, rounds: int) -> None:
    print(f"service: 1 uvicorn worker, {settings.database_url}")
    print(f"  sqlite synchronous={settings.sqlite_synchronous}, writer batch max={settings.writer_batch_max}")
    print(f"  uvicorn options: {server_options(settings)}")
    print(
        f"load: {client} keep-alive HTTP/1.1 over loopback, warm-up {warmup:g} s, {duration:g} s per run, "
        f"{rounds} rounds"
    )
    print(f"machine: {os.cpu_count()} CPUs, shared by the client and the server under test\n")


def median_runs(runs: list[Run]) -> dict[tuple[str, int], tuple[Run, float, float]]:
    """Per (target, concurrency): the median round, and the slowest and fastest rates."""
    grouped: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        grouped.setdefault((r.target, r.concurrency), []).append(r)
    out = {}
    for key, rounds in grouped.items():
        ordered = sorted(rounds, key=lambda r: r.per_second)
        out[key] = (ordered[len(ordered) // 2], ordered[0].per_second, ordered[-1].per_second)
    return out


def print_table(runs: list[Run]) -> None:
    medians = median_runs(runs)
    print(
        f"{'target':<7}{'conc':>5}{'req/s':>10}{'min–max':>15}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'client cpu':>12}"
    )
    for (target, c), (r, lo, hi) in medians.items():
        print(
            f"{target:<7}{c:>5}{r.per_second:>10.0f}{f'{lo:.0f}–{hi:.0f}':>15}"
            f"{r.ms(0.5):>9.2f}{r.ms(0.99):>9.2f}{r.errors:>8}{r.client_cpu / r.seconds:>12.0%}"
        )
    print()
    for c in sorted({c for _, c in medians}):
        by = {t: medians[(t, c)][0].per_second for t, cc in medians if cc == c}
        print(
            f"concurrency {c:>3}: MO/bare = {by['mo'] / by['bare']:.2f}, "
            f"vote/bare = {by['vote'] / by['bare']:.2f}, vote/MO = {by['vote'] / by['mo']:.2f}"
        )


def count_rows(database: Path) -> tuple[int, int, int]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT count(*) FROM inbound_messages").fetchone()[0]
        held = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        votes = db.execute("SELECT count(*) FROM votes").fetchone()[0]
    return rows, held, votes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, taking turns")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated connection counts")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare)
    levels = [int(c) for c in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="smsflows-bench-") as tmp:
        base = Path(tmp)
        (base / "flows").mkdir()
        (base / "vote-flows").mkdir()
        (base / "vote-flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
        mo_env = service_env(base / "mo.db", base / "flows")
        vote_env = service_env(base / "vote.db", base / "vote-flows")
        print_settings(load_settings(mo_env, None), args.client, args.duration, args.warmup, args.rounds)
        ports = {"bare": free_port(), "mo": free_port(), "vote": free_port()}
        bare_cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(ports["bare"])]

        def serve(target: str) -> list[str]:
            return [sys.executable, "-m", "app.cli", "serve", "--port", str(ports[target])]

        runs: list[Run] = []
        acknowledged = {"mo": 0, "vote": 0}
        with (
            server(bare_cmd, ports["bare"], mo_env, base),
            server(serve("mo"), ports["mo"], mo_env, base),
            server(serve("vote"), ports["vote"], vote_env, base),
        ):
            for concurrency in levels:
                for _ in range(args.rounds):
                    for target in ("bare", "mo", "vote"):
                        port = ports[target]
                        warm = run_loop(load(port, Run(target, concurrency), args.warmup, args.client))
                        run = run_loop(load(port, Run(target, concurrency), args.duration, args.client))
                        if target in acknowledged:
                            acknowledged[target] += warm.ok + run.ok
                        runs.append(run)
                        print(f"  {target} x{concurrency}: {run.per_second:.0f} req/s", file=sys.stderr)
        print_table(runs)
        ok = True
        for target in ("mo", "vote"):
            rows, held, votes = count_rows(base / f"{target}.db")
            expected_votes = acknowledged[target] if target == "vote" else 0
            good = rows == acknowledged[target] and held == 0 and votes == expected_votes
            ok &= good
            print(
                f"{target}: stored rows {rows}, 200 answers {acknowledged[target]} (warm-ups included), "
                f"quarantined {held}, votes {votes}: {'OK' if good else 'MISMATCH'}"
            )
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
