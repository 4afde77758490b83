"""Code import speed: one million random codes into SQLite and PostgreSQL, then the same file again.

Each database is fresh (a temporary SQLite file, a temporary PostgreSQL database that is dropped
at the end); the import is the one ``smsflows codes import`` runs, without the progress bar.

    .venv/bin/python bench/codes_import.py [--codes 1000000] [--pg postgresql+asyncpg://...]

``--pg`` defaults to SMSFLOWS_TEST_PG_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/test;
``--pg ""`` skips PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import string
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db.engine import create_engine
from app.db.migrate import upgrade
from app.flows.codes_import import import_codes
from app.flows.kinds.code import CodeFlow, CodeSpec
from app.settings import load_settings

ALPHABET = string.ascii_uppercase + string.digits
DEFAULT_PG = os.environ.get("SMSFLOWS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def write_codes(path: Path, count: int) -> None:
    """Random 10-character codes, as printed: some lower case, some with a dash."""
    rng = random.Random(count)
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            code = "".join(rng.choices(ALPHABET, k=10))
            f.write(f"{code[:5]}-{code[5:]}\n" if i % 10 == 0 else f"{code}\n")


@asynccontextmanager
async def pg_database(admin_url: str) -> AsyncIterator[str]:
    name = f"smsflows_bench_{secrets.token_hex(3)}"
    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def measure(label: str, url: str, flow: CodeFlow, codes: Path) -> None:
    engine = create_engine(load_settings({"SMSFLOWS_DATABASE_URL": url}, None))
    try:
        await upgrade(engine)
        for run in ("first import", "again (idempotent)"):
            started = time.perf_counter()
            report = await import_codes(engine, flow, codes)
            took = time.perf_counter() - started
            print(
                f"{label:<11} {run:<19} {took:6.1f} s  {report.read / took:>9,.0f} codes/s  "
                f"read {report.read:,}, new {report.new:,}",
                flush=True,
            )
    finally:
        await engine.dispose()


async def main(count: int, pg_url: str) -> None:
    flow = CodeFlow(id="bench", keywords=["KOD"], code=CodeSpec(source="list", file="codes.txt"))
    with tempfile.TemporaryDirectory() as tmp:
        codes = Path(tmp) / "codes.txt"
        started = time.perf_counter()
        write_codes(codes, count)
        print(f"{count:,} codes written in {time.perf_counter() - started:.1f} s", flush=True)
        await measure("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", flow, codes)
        if pg_url:
            async with pg_database(pg_url) as url:
                await measure("PostgreSQL", url, flow, codes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--pg", default=DEFAULT_PG)
    args = parser.parse_args()
    asyncio.run(main(args.codes, args.pg))
