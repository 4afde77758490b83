"""MO ingest into a vote flow with live tally pages open against none: watchers must not slow ingest.

    .venv/bin/python bench/live_watchers.py [--watchers 50] [--rounds 5] [--duration 5] [--concurrency 8]

One service (SQLite, synchronous=FULL, the vote flow of bench/mo_ingest.py, the dashboard on) runs
as a subprocess. Each round measures MO/s into the webhook twice, once with no page open and once
with ``--watchers`` signed-in live tally streams (``/flows/bench/live``) open in a second process,
the order alternating from round to round; the table shows the median round of each with the
slowest and fastest beside it, and the ratio of the medians. Beside the rate, the service's CPU per
MO (the tally fan-out to the pages included): on a shared machine it moves far less than the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mo_ingest import (  # noqa: E402
    VOTE_FLOW,
    Run,
    count_rows,
    cpu_seconds,
    free_port,
    load,
    run_loop,
    server,
    service_env,
)

from tests.dashboard import csrf_of  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


async def watch(port: int, watchers: int) -> None:
    """Sign in once, open ``watchers`` live streams, say "ready" once each had its first tally,
    then keep reading them until stdin closes."""
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=watchers + 5, max_keepalive_connections=watchers + 5)
    async with httpx.AsyncClient(base_url=base, timeout=None, limits=limits) as client:
        login = await client.get("/login")
        signed = await client.post(
            "/login", data={"name": USER, "password": PASSWORD, "_csrf_token": csrf_of(login.text)}
        )
        assert signed.status_code == 303, signed.text
        started = [asyncio.Event() for _ in range(watchers)]
        events = [0] * watchers

        async def one(i: int) -> None:
            async with client.stream("GET", "/flows/bench/live") as stream:
                assert stream.status_code == 200, stream.status_code
                async for line in stream.aiter_lines():
                    if line.startswith("event: tally"):
                        events[i] += 1
                        started[i].set()

        tasks = [asyncio.create_task(one(i)) for i in range(watchers)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench says stop
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        print(f"tally events per page: median {statistics.median(events):.0f}", flush=True)


@contextlib.contextmanager
def watching(port: int, watchers: int) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--watch", str(port), "--watchers", str(watchers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the live pages did not open (exit code {proc.poll()})")
        yield
    finally:
        proc.stdin.close()
        print(f"    {proc.stdout.read().strip()}", file=sys.stderr)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8, help="MO connections in flight")
    parser.add_argument("--watch", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watch:
        return asyncio.run(watch(args.watch, args.watchers))

    with tempfile.TemporaryDirectory(prefix="smsflows-watchers-") as tmp:
        base = Path(tmp)
        (base / "flows").mkdir()
        (base / "flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
        database_url = f"sqlite+aiosqlite:///{base / 'vote.db'}"
        env = service_env(database_url, base / "flows")
        env["SMSFLOWS_SESSION_SECRET"] = "bench-watchers-secret"
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*cli, "users", "add", USER, "--role", "viewer", "--password-stdin"],
            input=PASSWORD + "\n", text=True, env=env, check=True, capture_output=True,
        )  # fmt: skip
        port = free_port()
        print(
            f"service: SQLite synchronous=FULL, vote flow; load: {args.concurrency} keep-alive connections, "
            f"{args.duration:g} s per run after {args.warmup:g} s warm-up, {args.rounds} rounds, "
            f"{args.watchers} live pages against none, alternating\n"
        )
        runs: dict[str, list[Run]] = {"none": [], "watched": []}
        acknowledged = 0
        with server([*cli, "serve", "--port", str(port)], port, env, base) as service:
            for round_ in range(args.rounds):
                order = ("none", "watched") if round_ % 2 == 0 else ("watched", "none")
                for target in order:
                    with watching(port, args.watchers) if target == "watched" else contextlib.nullcontext():
                        warm = run_loop(load(port, Run(target, args.concurrency), args.warmup, "raw"))
                        cpu = cpu_seconds([service.pid])
                        run = run_loop(load(port, Run(target, args.concurrency), args.duration, "raw"))
                        run.server_cpu = cpu_seconds([service.pid]) - cpu
                    acknowledged += warm.ok + run.ok
                    runs[target].append(run)
                    rate, cpu_ms = f"{run.per_second:.0f} MO/s", f"CPU {run.cpu_ms:.3f} ms a MO"
                    print(f"  round {round_ + 1} {target}: {rate}, {cpu_ms}", file=sys.stderr)
        print(
            f"{'live pages':<12}{'MO/s':>8}{'min–max':>14}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
            f"{'CPU ms/MO':>11}{'min–max':>14}"
        )
        medians, cpu_medians = {}, {}
        for target, label in (("none", "0"), ("watched", str(args.watchers))):
            ordered = sorted(runs[target], key=lambda r: r.per_second)
            mid = ordered[len(ordered) // 2]
            medians[target] = mid.per_second
            span = f"{ordered[0].per_second:.0f}–{ordered[-1].per_second:.0f}"
            errors = sum(r.errors for r in ordered)
            cpus = sorted(r.cpu_ms for r in ordered)
            cpu_medians[target] = statistics.median(cpus)
            cpu_span = f"{cpus[0]:.3f}–{cpus[-1]:.3f}"
            print(
                f"{label:<12}{mid.per_second:>8.0f}{span:>14}{mid.ms(0.5):>9.2f}{mid.ms(0.99):>9.2f}{errors:>8}"
                f"{cpu_medians[target]:>11.3f}{cpu_span:>14}"
            )
        print(f"\nMO/s, {args.watchers} live pages / none = {medians['watched'] / medians['none']:.2f}")
        print(
            f"CPU per MO, {args.watchers} live pages / none = "
            f"{cpu_medians['watched'] / cpu_medians['none']:.2f}"
        )
        stored = count_rows(database_url)
        good = stored.check(acknowledged, flows=True)
        print(
            f"stored {stored.rows}, quarantined {stored.held}, votes {stored.votes}, replies queued "
            f"{stored.replies} for {stored.replied_messages} messages, 200 answers {acknowledged}: "
            f"{'OK' if good else 'MISMATCH'}"
        )
        if not good:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
