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
from typing import Any

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
# Members, contest entries and survey answers, from the phones of the seeded inbound messages.
MEMBERS = 200_000  # phones on the "nowosci" list; 70 % active, 20 % left, 10 % awaiting confirmation
CODES = 120_000  # "kapsle" codes imported; REDEMPTIONS of them entered, the rest left
REDEMPTIONS = 100_000  # entries in each of the two contests, "lato" (pattern) and "kapsle" (list)
SURVEYS = 50_000  # "ankieta" conversations: most completed (three answers), some stopped midway
KINDS_DAYS = 120  # members joined, codes were entered and surveys answered over the last four months
CODE_FLOW = """id = "kapsle"
kind = "code"
name = "Kody spod kapsli"
numbers = ["70120"]
keywords = ["KAPSEL"]
transliterate = true

[code]
source = "list"
file = "codes/kapsle.txt"
per_sender = 3
"""
# A page of the list deep in it: the members who joined from 30 days ago on (a keyset position).
DEEP_MEMBERS = ("/flows/nowosci?later={deep}.0", "/flows/nowosci?earlier={deep}.0")
PAGES = [
    "/", "/overview/figures", "/flows", "/flows/final", "/flows/final/tally",
    *(f"/flows/{name}" for name in EXAMPLES), "/flows/kapsle", *DEEP_MEMBERS, "/messages/in",
    "/messages/out", "/contacts", "/failures", "/draws", "/audit", "/users",
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


def _phone(i: int) -> str:
    """The sender of the ``i``-th seeded inbound message."""
    return f"48{600000000 + i}"


Rows = tuple[list[str], list[tuple[Any, ...]]]  # the columns and the rows of one table


def _members(now: datetime) -> Rows:
    rng = random.Random(2)
    rows = []
    for i in range(MEMBERS):
        asked = (now - timedelta(days=rng.uniform(0, KINDS_DAYS))).replace(microsecond=0)
        status = "active" if i % 10 < 7 else "left" if i % 10 < 9 else "pending"
        confirmed = asked + timedelta(seconds=rng.randint(10, 3000)) if status != "pending" else None
        left = confirmed + (now - confirmed) * rng.random() if status == "left" and confirmed else None
        rows.append(("nowosci", _phone(i), status, "nowosci", "bench", asked, confirmed, left))
    columns = [
        "list_id",
        "phone",
        "status",
        "flow_id",
        "flow_hash",
        "requested_at",
        "confirmed_at",
        "left_at",
    ]
    return columns, rows


def _codes() -> Rows:
    return ["flow_id", "code"], [("kapsle", f"K{n:07d}") for n in range(CODES)]


def _redemptions(now: datetime) -> Rows:
    """Each contest's entries: a tenth of the phones entered three codes, the others one."""
    rng = random.Random(3)
    rows = []
    for flow, base, letter in (("lato", MEMBERS, "L"), ("kapsle", MEMBERS + REDEMPTIONS, "K")):
        times = sorted(now - timedelta(days=rng.uniform(0, KINDS_DAYS)) for _ in range(REDEMPTIONS))
        for i, t in enumerate(reversed(times)):
            sender, seq = (
                (_phone(base + i // 3), i % 3 + 1) if i < REDEMPTIONS * 3 // 10 else (_phone(base + i), 1)
            )
            rows.append((flow, "bench", f"{letter}{i:07d}", sender, seq, base + i + 1, t))
    return ["flow_id", "flow_hash", "code", "sender", "seq", "inbound_id", "created_at"], rows


SURVEY_TEXTS = ("Więcej muzyki", "Krótsze przerwy", "Nic, jest super", "Lepszy dźwięk", "Więcej gości")


def _surveys(now: datetime) -> tuple[Rows, Rows]:
    """Conversations of ``ankieta`` and their answers: 80 % completed, the others stopped midway,
    expired, or (started in the last minutes) still going."""
    rng = random.Random(4)
    base = MEMBERS + 2 * REDEMPTIONS
    conversations, answers = [], []
    for i in range(SURVEYS):
        share = i % 20
        status = (
            "completed" if share < 16 else "aborted" if share < 18 else "expired" if share < 19 else "active"
        )
        ago = (
            timedelta(minutes=rng.uniform(1, 20))
            if status == "active"
            else timedelta(days=rng.uniform(0, KINDS_DAYS))
        )
        started = now - ago
        given = {"completed": 3, "aborted": 1, "expired": 0, "active": 2}[status]
        step = ("ocena", "ponownie", "uwagi")[min(given, 2)]
        updated = started + timedelta(minutes=given)
        expires = updated + timedelta(minutes=30) if status in ("active", "expired") else None
        conversations.append((i + 1, "ankieta", "bench", _phone(base + i), "70120", step, status, 0,
                              started, updated, expires))  # fmt: skip
        values = (str(rng.randint(1, 10)), rng.choice(("TAK", "NIE")), rng.choice(SURVEY_TEXTS))
        for n, (name, value) in enumerate(zip(("ocena", "ponownie", "uwagi"), values[:given], strict=False)):
            answers.append((i + 1, "ankieta", _phone(base + i), name, value, base + i + 1,
                            started + timedelta(minutes=n + 1)))  # fmt: skip
    conversation_columns = ["id", "flow_id", "flow_hash", "sender", "number", "step", "status", "retries",
                            "started_at", "updated_at", "expires_at"]  # fmt: skip
    answer_columns = ["conversation_id", "flow_id", "sender", "step", "value", "inbound_id", "created_at"]
    return (conversation_columns, conversations), (answer_columns, answers)


def _kind_tables(now: datetime, empty: set[str]) -> list[tuple[str, Rows]]:
    """The tables of ``empty`` (of subscriptions, codes, redemptions, conversations) with their rows."""
    tables: list[tuple[str, Rows]] = []
    if "subscriptions" in empty:
        tables.append(("subscriptions", _members(now)))
    if "codes" in empty:
        tables.append(("codes", _codes()))
    if "redemptions" in empty:
        tables.append(("redemptions", _redemptions(now)))
    if "conversations" in empty:
        conversations, answers = _surveys(now)
        tables += [("conversations", conversations), ("survey_answers", answers)]
    return tables


KIND_TABLES = ("subscriptions", "codes", "redemptions", "conversations")


def _sqlite_value(value: Any) -> Any:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if isinstance(value, datetime) else value


def seed_kinds(conn: sqlite3.Connection) -> None:
    """A subscription list's members, two contests' entries (and the codes of the one with a list)
    and a survey's answers, for the pages of those flows. Added to a database seeded before without
    them."""
    empty = {t for t in KIND_TABLES if conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is None}
    if not empty:
        return
    start = time.perf_counter()
    with conn:
        for table, (columns, rows) in _kind_tables(datetime.now(UTC), empty):
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                ([_sqlite_value(v) for v in row] for row in rows),
            )
    print(f"seeded {', '.join(sorted(empty))} in {time.perf_counter() - start:.0f} s")


async def seed_kinds_postgres(conn: asyncpg.Connection) -> None:
    """As ``seed_kinds``."""
    empty = {t for t in KIND_TABLES if await conn.fetchval(f"SELECT 1 FROM {t} LIMIT 1") is None}
    if not empty:
        return
    start = time.perf_counter()
    for table, (columns, rows) in _kind_tables(datetime.now(UTC), empty):
        await conn.copy_records_to_table(table, columns=columns, records=rows)
        await conn.execute(f"ANALYZE {table}")
    if "conversations" in empty:  # the ids were given: the next one follows them
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('conversations', 'id'), max(id)) FROM conversations"
        )
    print(f"seeded {', '.join(sorted(empty))} in {time.perf_counter() - start:.0f} s")


def seed(db: Path, rows: int) -> None:
    conn = sqlite3.connect(db)
    if conn.execute("SELECT count(*) FROM inbound_messages").fetchone()[0] >= rows:
        seed_events(conn)
        seed_kinds(conn)
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
    seed_kinds(conn)
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
            await seed_kinds_postgres(conn)
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
        await seed_kinds_postgres(conn)
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
        print(f"{'page':<44} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8}")
        # The member-list position 30 days ago: microseconds since the epoch, none of its second before.
        deep = (datetime.now(UTC) - timedelta(days=30) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1
        )
        for page in (p.format(deep=deep) for p in PAGES):
            times = []
            for _ in range(requests):
                start = time.perf_counter()
                resp = client.get(page)
                times.append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 200, (page, resp.status_code)
            first = times[0]
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{page:<44} {first:>9.1f} {statistics.median(times):>8.1f} {p95:>8.1f}", flush=True)


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
    (flows / "kapsle.toml").write_text(CODE_FLOW, encoding="utf-8")
    (flows / "codes").mkdir(exist_ok=True)
    (flows / "codes" / "kapsle.txt").write_text("".join(f"{c}\n" for _, c in _codes()[1]), encoding="utf-8")
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
