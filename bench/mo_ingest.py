"""MO ingest throughput: the real webhook next to a bare form-parsing app.

Every target is a server subprocess; this process is the load generator: keep-alive HTTP/1.1
connections over loopback, one unique sms_id per request. The ratio to ``bare`` says what storing a
message durably costs on top of receiving the form.

    .venv/bin/python bench/mo_ingest.py [--duration 5] [--rounds 3] [--concurrency 1,8,32]
                                        [--client raw|httpx] [--targets bare,mo,vote,pg-vote,pg-vote-2]
                                        [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
                                        [--lanes 1,2,4]

Targets (``--targets``, comma-separated, in the order they take turns):

- ``bare``: a Litestar app that only parses the form, under uvicorn with the service's options;
- ``mo``: the service without flows, SQLite ``synchronous=FULL``;
- ``vote``: the service with a vote flow (every message an accepted vote with a queued reply), SQLite;
- ``pg-vote``, ``pg-vote-2``: the vote flow on PostgreSQL, one service process and two
  (``smsflows serve --workers 2``: both accept on the same socket and share the load), each target
  on a database of its own, created for the run at ``--pg-url``'s server and dropped at the end;
- ``bare-granian``, ``vote-granian``: ``bare`` and ``vote`` under granian instead of uvicorn (when
  granian is installed; the service does not depend on it), to compare the HTTP servers.

``--lanes 1,2,4`` runs each PostgreSQL target once per count of writer lanes
(``SMSFLOWS_WRITER_LANES``), as ``pg-vote+l1``, ``pg-vote+l2``, …; without it they run with the
setting's default.

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
import dataclasses
import importlib.util
import itertools
import math
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Coroutine, Iterator
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


def bare_app() -> Litestar:
    return Litestar([bare_mo])


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, **server_options(load_settings()))


# --- servers -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def server(
    command: list[str],
    port: int,
    env: dict[str, str],
    cwd: Path,
    *,
    timeout: float = 180,
    quiet: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server subprocess until the block ends, once it answers HTTP.

    An answer, not an open port: with several worker processes the socket listens before any of
    them has started its app, which on a loaded machine takes tens of seconds.
    """
    # Quiet: the server's output goes to a file, whose end is shown if the server does not start.
    log = tempfile.TemporaryFile() if quiet else None  # noqa: SIM115 (closed in the finally)
    errors = subprocess.STDOUT if quiet else None
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=errors)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break  # any status: the app is answering (the bare app has no /health)
            if proc.poll() is not None or time.monotonic() > deadline:
                said = ""
                if log is not None:
                    log.seek(0)
                    said = "\n" + log.read().decode(errors="replace")[-3000:]
                raise SystemExit(f"server {command} did not start (exit code {proc.poll()}){said}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()  # SIGTERM: the server shuts down gracefully, the writer commits what it holds
        proc.wait(timeout=timeout)
        if log is not None:
            log.close()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of the given processes and their live children (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            total += cpu_seconds([int(c) for c in children])
    return total


def backend_pids(admin_url: str, database_url: str) -> list[int]:
    """PostgreSQL's server processes for the database (each connection has one)."""
    import asyncpg

    async def run() -> list[int]:
        conn = await asyncpg.connect(pg_dsn(admin_url), timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", database_url.rsplit("/", 1)[1]
            )
            return [r[0] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(run())


# --- load generation ---------------------------------------------------------------------------------


@dataclass
class Run:
    target: str
    concurrency: int
    seconds: float = 0.0
    client_cpu: float = 0.0  # CPU seconds this process (the load generator) spent
    server_cpu: float = 0.0  # CPU seconds the server's processes (and PostgreSQL's backends) spent
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return (self.ok + self.errors) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request: unlike the rate, it hardly moves with what else the machine runs."""
        done = self.ok + self.errors
        return self.server_cpu * 1000 / done if done else math.nan

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


@dataclass(frozen=True)
class Target:
    name: str
    flows: bool = False  # the vote flow, or none
    database: str | None = None  # "sqlite" or "postgresql"; None: the bare app
    workers: int = 1
    http: str = "uvicorn"
    source: Path | None = None  # another checkout's code (--baseline), or this one's
    lanes: int | None = None  # SMSFLOWS_WRITER_LANES (--lanes), or the setting's default

    def baseline(self, source: Path) -> Target:
        return dataclasses.replace(self, name=f"{self.name}@base", source=source)

    def with_lanes(self, lanes: int) -> Target:
        return dataclasses.replace(self, name=f"{self.name}+l{lanes}", lanes=lanes)

    @property
    def stores(self) -> bool:
        return self.database is not None


TARGETS = {
    t.name: t
    for t in (
        Target("bare"),
        Target("mo", database="sqlite"),
        Target("vote", flows=True, database="sqlite"),
        Target("pg-vote", flows=True, database="postgresql"),
        Target("pg-vote-2", flows=True, database="postgresql", workers=2),
        Target("bare-granian", http="granian"),
        Target("vote-granian", flows=True, database="sqlite", http="granian"),
    )
}
DEFAULT_TARGETS = "bare,mo,vote,pg-vote,pg-vote-2"
# Ratios printed under the table, when both targets ran: (what, against what).
RATIOS = [
    ("mo", "bare"),
    ("vote", "bare"),
    ("vote", "mo"),
    ("pg-vote", "bare"),
    ("pg-vote", "vote"),
    ("pg-vote-2", "pg-vote"),
    ("bare-granian", "bare"),
    ("vote-granian", "vote"),
]


def service_env(
    database_url: str, flows: Path, source: Path | None = None, lanes: int | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSFLOWS_")}
    if source is not None:  # its `app` comes first on the path; its folder stays as it was
        env.update(PYTHONPATH=str(source), PYTHONDONTWRITEBYTECODE="1")
    if lanes is not None:
        env.update(SMSFLOWS_WRITER_LANES=str(lanes))
    env.update(
        SMSFLOWS_FLOWS_DIR=str(flows),
        SMSFLOWS_DATABASE_URL=database_url,
        SMSFLOWS_MO_ALLOWED_IPS="127.0.0.1",
        SMSFLOWS_SQLITE_SYNCHRONOUS="FULL",
        # Ingest alone: the replies stay queued (delivering them is measured by bench/outbound.py).
        SMSFLOWS_DISPATCHER="false",
        SMSFLOWS_LOG_LEVEL="WARNING",
    )
    return env


# --- PostgreSQL: a database of the run's own per target ----------------------------------------------


def pg_dsn(url: str, database: str | None = None) -> str:
    """asyncpg's DSN for a SQLAlchemy URL (optionally naming another database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def pg_url(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def pg_admin(url: str, sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(pg_dsn(url), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def pg_database(admin_url: str, target: str) -> Iterator[str]:
    """A new, empty database (dropped afterwards): no run reads or writes another one's tables."""
    name = f"smsflows_bench_{re.sub(r'[^a-z0-9]', '_', target)}_{secrets.token_hex(4)}"
    try:
        pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    except OSError as exc:
        raise SystemExit(
            f"PostgreSQL not reachable at {admin_url} ({exc}): start it, pass --pg-url, "
            "or leave PostgreSQL out (--targets bare,mo,vote)"
        ) from None
    try:
        yield pg_url(admin_url, name)
    finally:
        pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(env: dict[str, str], cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
    )


# --- commands ----------------------------------------------------------------------------------------


def command(target: Target, port: int) -> list[str]:
    if target.http == "granian":
        app = "mo_ingest:bare_app" if not target.stores else "app.main:app_from_env"
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(target.workers), "--loop", "uvloop", "--http", "1",
            "--no-ws", "--log-level", "warning", "--working-dir", str(Path(__file__).resolve().parent), app,
        ]  # fmt: skip
    if not target.stores:
        return [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)]
    serve = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    return serve + (["--workers", str(target.workers)] if target.workers > 1 else [])


def print_settings(
    settings: Settings, targets: list[Target], client: str, duration: float, warmup: float, rounds: int
) -> None:
    for t in targets:
        what = (
            "bare form-parsing app"
            if not t.stores
            else f"service on {t.database}, " + ("vote flow" if t.flows else "no flows")
        )
        code = f", code from {t.source}" if t.source else ""
        if t.database == "postgresql":
            what += f", {t.lanes or settings.writer_lanes} writer lane(s) per process"
        print(f"  {t.name:<13} {what}, {t.workers} process(es), {t.http}{code}")
    print(f"sqlite synchronous={settings.sqlite_synchronous}, writer batch max={settings.writer_batch_max}")
    print(f"uvicorn options: {server_options(settings)}")
    print(
        f"load: {client} keep-alive HTTP/1.1 over loopback, warm-up {warmup:g} s, {duration:g} s per run, "
        f"{rounds} rounds"
    )
    print(f"machine: {os.cpu_count()} CPUs, shared by the client and the servers under test")
    print("server cpu: the service process(es) and, on PostgreSQL, its backends, per request\n")


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
        f"{'target':<16}{'conc':>5}{'req/s':>10}{'min–max':>15}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'client cpu':>12}{'server cpu ms/req':>19}"
    )
    for (target, c), (r, lo, hi) in medians.items():
        print(
            f"{target:<16}{c:>5}{r.per_second:>10.0f}{f'{lo:.0f}–{hi:.0f}':>15}"
            f"{r.ms(0.5):>9.2f}{r.ms(0.99):>9.2f}{r.errors:>8}{r.client_cpu / r.seconds:>12.0%}"
            f"{r.cpu_ms:>19.2f}"
        )
    print()
    for c in sorted({c for _, c in medians}):
        by = {t: medians[(t, c)][0].per_second for t, cc in medians if cc == c}
        pairs = RATIOS + [(t.removesuffix("@base"), t) for t in by if t.endswith("@base")] + lane_ratios(by)
        ratios = [f"{a}/{b} = {by[a] / by[b]:.2f}" for a, b in pairs if a in by and b in by and by[b]]
        print(f"concurrency {c:>3}: " + ", ".join(ratios))


def lane_ratios(names: Collection[str]) -> list[tuple[str, str]]:
    """The ratios of RATIOS for targets run with ``--lanes`` (against the same lane count where
    the other target has it too), and each lane count against one lane."""
    pairs = []
    for name in names:
        base, sep, lanes = name.partition("+l")
        if not sep:
            continue
        pairs += [(name, f"{b}+l{lanes}" if f"{b}+l{lanes}" in names else b) for a, b in RATIOS if a == base]
        if lanes != "1" and f"{base}+l1" in names:
            pairs.append((name, f"{base}+l1"))
    return pairs


@dataclass
class Stored:
    rows: int
    held: int
    votes: int
    replies: int
    replied_messages: int  # distinct messages with a queued reply

    def check(self, acknowledged: int, flows: bool) -> bool:
        """Stored rows = 200 answers, votes = accepted, each accepted vote's reply queued once."""
        expected = acknowledged if flows else 0
        return (
            self.rows == acknowledged
            and self.held == 0
            and self.votes == expected
            and self.replies == expected
            and self.replied_messages == expected
        )


COUNTS = (
    "SELECT (SELECT count(*) FROM inbound_messages), (SELECT count(*) FROM quarantine), "
    "(SELECT count(*) FROM votes), (SELECT count(*) FROM outbox), "
    "(SELECT count(DISTINCT inbound_id) FROM outbox)"
)


def count_rows(database_url: str) -> Stored:
    if database_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(database_url.split(":///", 1)[1])) as db:
            return Stored(*db.execute(COUNTS).fetchone())
    import asyncpg

    async def run() -> Stored:
        conn = await asyncpg.connect(pg_dsn(database_url), timeout=10)
        try:
            return Stored(*(await conn.fetchrow(COUNTS)))
        finally:
            await conn.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each target, taking turns")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each run")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated connection counts")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument(
        "--targets", default=DEFAULT_TARGETS, help=f"comma-separated, of: {', '.join(TARGETS)}"
    )
    parser.add_argument(
        "--pg-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server where the run may create and drop databases of its own",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another checkout of the code (e.g. `git worktree add DIR main`): every target that stores "
        "messages also runs from it, as <target>@base, taking turns with this checkout's",
    )
    parser.add_argument(
        "--lanes",
        metavar="N,N",
        help="comma-separated counts of writer lanes: each PostgreSQL target runs once with each",
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare)
    levels = [int(c) for c in args.concurrency.split(",")]
    unknown = [t for t in args.targets.split(",") if t not in TARGETS]
    if unknown:
        parser.error(f"--targets: no target {', '.join(unknown)} (there are {', '.join(TARGETS)})")
    targets = [TARGETS[t] for t in args.targets.split(",")]
    if args.lanes:
        try:
            counts = [int(n) for n in args.lanes.split(",")]
        except ValueError:
            parser.error(f"--lanes: expected comma-separated integers, e.g. 1,2,4, not {args.lanes!r}")
        targets = [
            variant
            for t in targets
            for variant in ([t.with_lanes(n) for n in counts] if t.database == "postgresql" else [t])
        ]
    if args.baseline is not None:
        if not (args.baseline / "app" / "cli").is_dir():
            parser.error(f"--baseline: {args.baseline} holds no checkout of the service (no app/cli)")
        targets += [t.baseline(args.baseline.resolve()) for t in targets if t.stores]
    if any(t.http == "granian" for t in targets) and importlib.util.find_spec("granian") is None:
        parser.error("the granian targets need granian: pip install granian (the service does not need it)")

    with tempfile.TemporaryDirectory(prefix="smsflows-bench-") as tmp, contextlib.ExitStack() as databases:
        base = Path(tmp)
        (base / "flows").mkdir()
        (base / "vote-flows").mkdir()
        (base / "vote-flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
        urls: dict[str, str] = {}
        for t in targets:
            if t.database == "sqlite":
                urls[t.name] = f"sqlite+aiosqlite:///{base / t.name.replace('@', '-')}.db"
            elif t.database == "postgresql":
                urls[t.name] = databases.enter_context(pg_database(args.pg_url, t.name))
        envs = {
            t.name: service_env(urls.get(t.name, f"sqlite+aiosqlite:///{base / 'unused.db'}"),
                                base / ("vote-flows" if t.flows else "flows"), t.source, t.lanes)
            for t in targets
        }  # fmt: skip
        print_settings(
            load_settings(envs[targets[0].name], None), targets, args.client, args.duration, args.warmup,
            args.rounds,
        )  # fmt: skip
        ports = {t.name: free_port() for t in targets}
        runs: list[Run] = []
        acknowledged = {t.name: 0 for t in targets}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        with contextlib.ExitStack() as servers:
            for t in targets:
                if t.database == "postgresql" or (t.stores and t.http == "granian"):
                    migrate(envs[t.name], base)  # `smsflows serve` migrates SQLite itself, not PostgreSQL
                procs[t.name] = servers.enter_context(
                    server(command(t, ports[t.name]), ports[t.name], envs[t.name], base)
                )
            for concurrency in levels:
                for _ in range(args.rounds):
                    for t in targets:
                        port = ports[t.name]
                        warm = run_loop(load(port, Run(t.name, concurrency), args.warmup, args.client))
                        pids = [procs[t.name].pid]
                        if t.database == "postgresql":  # after the warm-up: every connection is open
                            pids += backend_pids(args.pg_url, urls[t.name])
                        cpu = cpu_seconds(pids)
                        run = run_loop(load(port, Run(t.name, concurrency), args.duration, args.client))
                        run.server_cpu = cpu_seconds(pids) - cpu
                        acknowledged[t.name] += warm.ok + run.ok
                        runs.append(run)
                        print(f"  {t.name} x{concurrency}: {run.per_second:.0f} req/s", file=sys.stderr)
        # The servers have stopped (SIGTERM: each writer commits what it holds): count what they stored.
        print_table(runs)
        ok = True
        for t in targets:
            if not t.stores:
                continue
            s = count_rows(urls[t.name])
            good = s.check(acknowledged[t.name], t.flows)
            ok &= good
            print(
                f"{t.name}: stored rows {s.rows}, 200 answers {acknowledged[t.name]} (warm-ups included), "
                f"quarantined {s.held}, votes {s.votes}, replies queued {s.replies} "
                f"for {s.replied_messages} messages: {'OK' if good else 'MISMATCH'}"
            )
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
