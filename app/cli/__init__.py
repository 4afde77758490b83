"""The ``smsflows`` command: one module per family of subcommands, all on the ``main`` group."""

from app.cli import (  # noqa: F401  (each registers its commands)
    boards,
    contacts,
    counters,
    draws,
    evidence,
    flows,
    gateway,
    messages,
    outbox,
    retention,
    service,
    users,
)
from app.cli.root import main

__all__ = ["main"]
