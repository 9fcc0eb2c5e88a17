"""The ``asyncprov`` command and its subcommands (chat, providers, batch, serve, demo):
applications built on the public API, outside the library core.

Nothing heavy is imported here: ``main`` loads the commands inside its own guard, so
Ctrl-C at any moment after the interpreter starts exits 130 with one line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        from ._main import run

        return run(argv, out=out)
    except KeyboardInterrupt:
        sys.stderr.write("asyncprov: interrupted\n")
        return 130
    except BaseExceptionGroup as group:  # Ctrl-C from inside a task group
        if group.subgroup(KeyboardInterrupt) is not None and not group.subgroup(Exception):
            sys.stderr.write("asyncprov: interrupted\n")
            return 130
        raise
