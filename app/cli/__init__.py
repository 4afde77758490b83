"""The ``smsflows`` command: one module per family of subcommands, all on the ``main`` group."""

from app.cli import flows, gateway, messages, service, users  # noqa: F401  (each registers its commands)
from app.cli.root import main

__all__ = ["main"]
