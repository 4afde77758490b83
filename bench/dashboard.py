"""Dashboard page times on a large database: seeds SQLite, serves it, prints p50/p95 of every page.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--requests 30] [--database var/bench-dash.db]

Seeds ``--rows`` inbound messages, as many outbound messages and as many votes of one vote flow,
spread over the last 24 hours (a fifth of them in the last three), unless the database already
holds them; then starts the service as a subprocess, signs in and requests each page in turn.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dashboard import csrf_of  # noqa: E402

FLOW = """id = "final"
kind = "vote"
name = "Wielki Finał"
numbers = ["70120"]
keywords = ["GLOS"]

[vote]
options = { A = ["ANNA"], B = ["BARTEK"], C = ["CELINA"] }
"""
# Flows of the other kinds, from the examples, so their pages are timed on the same database.
EXAMPLES = ("lato", "nowosci", "ankieta", "wizyty", "info", "inne")
PAGES = [
    "/", "/overview/figures", "/flows", "/flows/final", "/flows/final/tally",
    *(f"/flows/{name}" for name in EXAMPLES), "/audit", "/users",
]  # fmt: skip


def _times(rows: int, now: datetime) -> list[str]:
    rng = random.Random(1)
    recent = rows // 5
    seconds = sorted(
        [rng.uniform(3 * 3600, 24 * 3600) for _ in range(rows - recent)]
        + [rng.uniform(0, 3 * 3600) for _ in range(recent)],
        reverse=True,
    )
    return [(now - timedelta(seconds=s)).replace(tzinfo=None).isoformat(" ", "microseconds") for s in seconds]


def seed(db: Path, rows: int) -> None:
    conn = sqlite3.connect(db)
    if conn.execute("SELECT count(*) FROM inbound_messages").fetchone()[0] >= rows:
        return
    now = datetime.now(UTC)
    stamps = _times(rows, now)
    start = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO inbound_messages (sms_id, number, sender, text, time, charset, raw_body, "
            "client_ip, received_at, last_received_at, deliveries, status) "
            "VALUES (?, '70120', ?, 'GLOS A', 0, 'utf-8', x'', '127.0.0.1', ?, ?, 1, 'processed')",
            ((secrets.token_hex(16), f"48{600000000 + i}", t, t) for i, t in enumerate(stamps)),
        )
        conn.executemany(
            "INSERT INTO outbox (ext_id, to_number, text, encoding, parts, status, created_at, attempts) "
            "VALUES (?, ?, 'Dziękujemy!', 'gsm7', 1, 'dry-run', ?, 0)",
            ((secrets.token_hex(10), f"48{600000000 + i}", t) for i, t in enumerate(stamps)),
        )
        conn.executemany(
            "INSERT INTO votes (flow_id, flow_hash, sender, seq, option, inbound_id, created_at, "
            "message_time) VALUES ('final', 'bench', ?, 1, ?, ?, ?, 0)",
            ((f"48{600000000 + i}", "ABC"[i % 3], i + 1, t) for i, t in enumerate(stamps)),
        )
    print(f"seeded {rows:,} inbound, outbound and votes in {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database", type=Path, default=ROOT / "var" / "bench-dash.db")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    args.database.parent.mkdir(parents=True, exist_ok=True)
    flows = args.database.parent / "bench-dash-flows"
    flows.mkdir(exist_ok=True)
    (flows / "final.toml").write_text(FLOW, encoding="utf-8")
    for name in EXAMPLES:
        (flows / f"{name}.toml").write_text((ROOT / "flows" / f"{name}.toml").read_text(encoding="utf-8"))
    env = {
        **os.environ,
        "SMSFLOWS_DATABASE_URL": f"sqlite+aiosqlite:///{args.database}",
        "SMSFLOWS_SESSION_SECRET": "bench-session-secret-xyz",
        "SMSFLOWS_FLOWS_DIR": str(flows),
        "SMSFLOWS_DISPATCHER": "false",
        "SMSFLOWS_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "app.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    seed(args.database, args.rows)
    subprocess.run(
        [*cli, "users", "add", "bench", "--role", "admin", "--password-stdin", "--exists-ok"],
        input="bench-password\n", text=True, env=env, check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen([*cli, "serve", "--port", str(args.port)], env=env)
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=60) as client:
            login = client.get("/login")
            client.post(
                "/login",
                data={"name": "bench", "password": "bench-password", "_csrf_token": csrf_of(login.text)},
            )
            print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8}")
            for page in PAGES:
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    resp = client.get(page)
                    times.append((time.perf_counter() - start) * 1000)
                    assert resp.status_code == 200, (page, resp.status_code)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"{page:<22} {statistics.median(times):>8.1f} {p95:>8.1f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
