"""The stored rows against the schema's CHECK and NOT NULL constraints: ``smsflows db check``.

The writer's SQLite connection skips CHECK constraints for speed (``app/db/engine.py``);
``PRAGMA integrity_check`` re-evaluates them over every stored row, so that shortcut stays
verifiable. ``PRAGMA quick_check`` (``--quick``) re-evaluates them too, in a fraction of the time:
it leaves out only the UNIQUE constraints and the comparison of each index with its table, which no
connection's shortcut can break. PostgreSQL enforces every constraint on every connection and needs
no such check.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

PROBLEMS_SHOWN = 20
"""How many problems ``integrity_check`` reports before it stops: enough to see what is wrong."""


@dataclass(frozen=True)
class IntegrityReport:
    """What the check found: ``problems`` as SQLite words them, empty when all is well."""

    checked: bool
    """False on PostgreSQL, where the server itself enforces every constraint."""
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_integrity(
    engine: AsyncEngine, limit: int = PROBLEMS_SHOWN, *, quick: bool = False
) -> IntegrityReport:
    """Run ``PRAGMA integrity_check`` (``quick_check`` if ``quick``) on SQLite; on PostgreSQL only
    see that the server answers."""
    async with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            await conn.exec_driver_sql("SELECT 1")
            return IntegrityReport(checked=False, problems=[])
        # A connection that ignores CHECK constraints also leaves them out of integrity_check
        # (it then says "ok" over rows that break them): make sure this one does not.
        await conn.exec_driver_sql("PRAGMA ignore_check_constraints=OFF")
        pragma = "quick_check" if quick else "integrity_check"
        rows = (await conn.exec_driver_sql(f"PRAGMA {pragma}({int(limit)})")).scalars().all()
    problems = [str(row) for row in rows if row != "ok"]
    return IntegrityReport(checked=True, problems=problems)
