"""MO ingest cost in CPU instructions per message: a bare form-parsing endpoint, the webhook without
flows and the webhook with a vote flow.

Requests per second on a shared machine swing by a third from one run to the next; instructions
counted by valgrind's callgrind do not. The service runs under callgrind, which counts only from the
end of a warm-up (start-up and warm-up run uninstrumented, several times faster than counted code,
which is about fifty times slower than native): then a fixed number of MO requests is sent, and the
counters are dumped. Instructions per message, for each service, say what storing a
message and counting a vote cost on top of receiving the form (the bare app of ``bench/mo_ingest.py``),
whatever else the machine is doing. The kernel's share (disk writes, fsync) is not in the count:
``bench/mo_ingest.py`` measures wall-clock throughput.

    .venv/bin/python bench/mo_instructions.py [--messages 2000] [--concurrency 1,8,32]

Needs valgrind (``apt install valgrind``): callgrind and callgrind_control.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mo_ingest import (
    CONTENT_TYPE,
    PATH,
    VOTE_FLOW,
    body,
    content_length,
    count_rows,
    free_port,
    server,
    service_env,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("bare", "mo", "vote")


async def send(port: int, concurrency: int, total: int) -> int:
    """Send ``total`` MO requests over ``concurrency`` keep-alive connections; returns the 200s."""
    left, ok = [total], [0]
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {CONTENT_TYPE}\r\n"
        "Content-Length: {}\r\n\r\n"
    )

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                payload = body()
                writer.write(head.format(len(payload)).encode() + payload)
                lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                await reader.readexactly(content_length(lines))
                ok[0] += lines[0].split(b" ")[1] == b"200"
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return ok[0]


def measure(target: str, concurrency: int, messages: int, base: Path) -> tuple[float, bool]:
    """Instructions per message of one service (``bare``, ``mo`` or ``vote``), and whether every
    request was answered 200 and, for the webhook, every 200 is a stored row."""
    work = base / f"{target}-{concurrency}"
    (work / "flows").mkdir(parents=True)
    if target == "vote":
        (work / "flows" / "bench.toml").write_text(VOTE_FLOW, encoding="utf-8")
    database = work / "smsflows.db"
    port = free_port()
    out = work / "callgrind.out"
    if target == "bare":
        served = [str(Path(__file__).resolve().parent / "mo_ingest.py"), "--serve-bare", str(port)]
    else:
        served = ["-m", "app.cli", "serve", "--port", str(port)]
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        *served,
    ]
    env = service_env(f"sqlite+aiosqlite:///{database}", work / "flows")

    def control(*options: str) -> None:
        subprocess.run(["callgrind_control", *options, str(proc.pid)], check=True, capture_output=True)

    # Python under valgrind starts in a minute or two, many more on a busy machine.
    with server(command, port, env, ROOT, timeout=1800, quiet=True) as proc:
        warm = asyncio.run(send(port, concurrency, 200))
        control("--instr=on")
        control("--zero")
        acknowledged = asyncio.run(send(port, concurrency, messages))
        control("--dump")
        control("--instr=off")  # the shutdown is not counted: let it run at uninstrumented speed
    dumps = [p for p in work.glob("callgrind.out.*") if p.suffix != ".out"]
    if not dumps:
        raise SystemExit(f"callgrind wrote no dump in {work}")
    summary = next(
        int(line.split()[1]) for line in dumps[0].read_text().splitlines() if line.startswith("summary:")
    )
    if target == "bare":
        return summary / messages, warm + acknowledged == 200 + messages
    stored = count_rows(f"sqlite+aiosqlite:///{database}")
    return summary / messages, stored.check(warm + acknowledged, target == "vote") and (
        warm + acknowledged == 200 + messages
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="MO requests counted per service")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated connection counts")
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("valgrind is not installed: `apt install valgrind`, then run this again")
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"service: 1 uvicorn worker under callgrind, SQLite; {args.messages} MO requests counted per run\n")
    print(
        f"{'conc':>5}{'bare':>12}{'no flows':>12}{'vote flow':>12}"
        f"{'no flows/bare':>15}{'vote/bare':>11}{'vote/no flows':>15}"
    )
    good = True
    with tempfile.TemporaryDirectory(prefix="smsflows-instructions-") as tmp:
        base = Path(tmp)
        for concurrency in levels:
            # All three at once: each is counted alone, whatever the others are doing.
            with ThreadPoolExecutor(3) as pool:
                runs = [pool.submit(measure, t, concurrency, args.messages, base) for t in TARGETS]
                (bare, bare_ok), (mo, mo_ok), (vote, vote_ok) = (r.result() for r in runs)
            good &= bare_ok and mo_ok and vote_ok
            print(
                f"{concurrency:>5}{bare / 1e6:>10.3f} M{mo / 1e6:>10.3f} M{vote / 1e6:>10.3f} M"
                f"{bare / mo:>15.2f}{bare / vote:>11.2f}{mo / vote:>15.2f}"
            )
    print(
        "\ninstructions per message; the ratios are throughput ratios as bench/mo_ingest.py prints them,\n"
        "predicted from the counts (vote/bare = bare instructions / vote instructions)"
    )
    if not good:
        raise SystemExit("MISMATCH: a request was not answered 200, or stored rows differ from the 200s")


if __name__ == "__main__":
    main()
