"""Dashboard page times on a large database: seeds it, serves it, prints p50/p95 of every page.

    .venv/bin/python bench/dashboard.py [--rows 1000000] [--requests 30] [--database var/bench-dash.db]
    .venv/bin/python bench/dashboard.py --postgres [--pg-name smsflows_dash_x --keep]

Seeds ``--rows`` inbound messages, as many outbound messages, as many votes of one vote flow and
the flow event of each vote, spread over the last 24 hours (a fifth of them in the last three),
unless the database already holds them; then starts the service as a subprocess, signs in and
requests each page in turn.
The first request of a page is shown apart: it pays for what the service counts once.

SQLite: the file is kept, and a later run reuses it (the seeding takes minutes). PostgreSQL
(127.0.0.1:5432, user postgres): a new database ``smsflows_dash_<random>`` filled with COPY and
analysed, dropped at the end unless ``--keep``; ``--pg-name`` reuses one kept before.
"""

from __future__ import annotations

import argparse
import asyncio
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

import asyncpg
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
    *(f"/flows/{name}" for name in EXAMPLES), "/messages/in", "/messages/out", "/contacts",
    "/failures", "/draws", "/audit", "/users",
]  # fmt: skip
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def _moments(rows: int, now: datetime) -> list[datetime]:
    rng = random.Random(1)
    recent = rows // 5
    seconds = sorted(
        [rng.uniform(3 * 3600, 24 * 3600) for _ in range(rows - recent)]
        + [rng.uniform(0, 3 * 3600) for _ in range(recent)],
        reverse=True,
    )
    return [now - timedelta(seconds=s) for s in seconds]


def seed(db: Path, rows: int) -> None:
    conn = sqlite3.connect(db)
    if conn.execute("SELECT count(*) FROM inbound_messages").fetchone()[0] >= rows:
        seed_events(conn)
        conn.close()
        return
    now = datetime.now(UTC)
    stamps = [t.replace(tzinfo=None).isoformat(" ", "microseconds") for t in _moments(rows, now)]
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
    seed_events(conn)
    conn.close()
    print(f"seeded {rows:,} inbound, outbound and votes in {time.perf_counter() - start:.0f} s")


def seed_events(conn: sqlite3.Connection) -> None:
    """A flow event per inbound message (the vote it counted), as the flows write them: the flow
    pages read the event log by flow. Added to a database seeded before without them."""
    if conn.execute("SELECT 1 FROM flow_events LIMIT 1").fetchone() is not None:
        return
    start = time.perf_counter()
    with conn:
        conn.execute(
            "INSERT INTO flow_events (inbound_id, sender, flow_id, flow_hash, outcome, detail, "
            "reply_id, created_at) SELECT id, sender, 'final', 'bench', 'accepted', NULL, id, "
            "received_at FROM inbound_messages ORDER BY id"
        )
    print(f"seeded the flow events in {time.perf_counter() - start:.0f} s")


async def seed_events_postgres(conn: asyncpg.Connection) -> None:
    """As ``seed_events``."""
    if await conn.fetchval("SELECT 1 FROM flow_events LIMIT 1") is not None:
        return
    start = time.perf_counter()
    await conn.execute(
        "INSERT INTO flow_events (inbound_id, sender, flow_id, flow_hash, outcome, detail, reply_id, "
        "created_at) SELECT id, sender, 'final', 'bench', 'accepted', NULL, id, received_at "
        "FROM inbound_messages ORDER BY id"
    )
    await conn.execute("ANALYZE flow_events")
    print(f"seeded the flow events in {time.perf_counter() - start:.0f} s")


async def seed_postgres(url: str, rows: int) -> None:
    """The same rows as ``seed``, through COPY (minutes where row-by-row inserts take hours)."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT count(*) FROM inbound_messages") >= rows:
            await seed_events_postgres(conn)
            return
        start = time.perf_counter()
        stamps = _moments(rows, datetime.now(UTC))
        phones = [f"48{600000000 + i}" for i in range(rows)]
        await conn.copy_records_to_table(
            "inbound_messages",
            columns=["sms_id", "number", "sender", "text", "time", "charset", "raw_body", "client_ip",
                     "received_at", "last_received_at", "deliveries", "status"],
            records=((secrets.token_hex(16), "70120", p, "GLOS A", 0, "utf-8", b"", "127.0.0.1", t, t, 1,
                      "processed") for p, t in zip(phones, stamps, strict=True)),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "outbox",
            columns=["ext_id", "to_number", "text", "encoding", "parts", "status", "created_at", "attempts"],
            records=((secrets.token_hex(10), p, "Dziękujemy!", "gsm7", 1, "dry-run", t, 0)
                     for p, t in zip(phones, stamps, strict=True)),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "votes",
            columns=["flow_id", "flow_hash", "sender", "seq", "option", "inbound_id", "created_at",
                     "message_time"],
            records=(("final", "bench", p, 1, "ABC"[i % 3], i + 1, t, 0)
                     for i, (p, t) in enumerate(zip(phones, stamps, strict=True))),
        )  # fmt: skip
        await conn.execute("ANALYZE")
        await seed_events_postgres(conn)
        print(f"seeded {rows:,} inbound, outbound and votes in {time.perf_counter() - start:.0f} s")
    finally:
        await conn.close()


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(name: str) -> None:
    """``name`` on the server, made unless a run before kept it."""
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def time_pages(base: str, requests: int) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        login = client.get("/login")
        client.post(
            "/login",
            data={"name": "bench", "password": "bench-password", "_csrf_token": csrf_of(login.text)},
        )
        print(f"{'page':<22} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8}")
        for page in PAGES:
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                resp = client.get(page)
                times.append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 200, (page, resp.status_code)
            first = times[0]
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{page:<22} {first:>9.1f} {statistics.median(times):>8.1f} {p95:>8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--database",
        type=Path,
        default=ROOT / "var" / "bench-dash.db",
        help="the SQLite file (kept and reused); beside it the bench's flow files",
    )
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--pg-name", help="reuse this PostgreSQL database (smsflows_dash_...)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database afterwards")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()  # fmt: skip
    args.database.parent.mkdir(parents=True, exist_ok=True)
    flows = args.database.parent / "bench-dash-flows"
    flows.mkdir(exist_ok=True)
    (flows / "final.toml").write_text(FLOW, encoding="utf-8")
    for name in EXAMPLES:
        (flows / f"{name}.toml").write_text((ROOT / "flows" / f"{name}.toml").read_text(encoding="utf-8"))
    pg_name = None
    if args.postgres:
        pg_name = args.pg_name or f"smsflows_dash_{secrets.token_hex(4)}"
        if not pg_name.startswith("smsflows_dash_"):
            raise SystemExit(f"--pg-name {pg_name!r}: the bench only uses databases named smsflows_dash_...")
        asyncio.run(create_database(pg_name))
        print(f"PostgreSQL database {pg_name}")
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
    else:
        url = f"sqlite+aiosqlite:///{args.database}"
    env = {
        **os.environ,
        "SMSFLOWS_DATABASE_URL": url,
        "SMSFLOWS_SESSION_SECRET": "bench-session-secret-xyz",
        "SMSFLOWS_FLOWS_DIR": str(flows),
        "SMSFLOWS_DISPATCHER": "false",
        "SMSFLOWS_LOG_LEVEL": "WARNING",
    }
    cli = [sys.executable, "-m", "app.cli"]
    try:
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        if pg_name is None:
            seed(args.database, args.rows)
        else:
            asyncio.run(seed_postgres(f"{PG_SERVER}/{pg_name}", args.rows))
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
            time_pages(base, args.requests)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        if pg_name is not None and not args.keep:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
        elif pg_name is not None:
            print(f"kept PostgreSQL database {pg_name}: --postgres --pg-name {pg_name} reuses it")


if __name__ == "__main__":
    main()
