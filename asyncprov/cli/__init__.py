"""The ``asyncprov`` command and its subcommands (chat, providers, batch, serve, demo):
applications built on the public API, outside the library core."""

from ._main import main as main

__all__ = ["main"]
