"""Exit statuses, and the one place an expected failure becomes one line and a status."""

from __future__ import annotations

from typing import TextIO

from asyncprov import AsyncProvError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "exit_status"]

EXIT_OK = 0
EXIT_FAILED = 1
"""The request (or some requests of a batch) failed."""
EXIT_USAGE = 2
"""The command line, a file or the configuration cannot be acted on."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (or SIGINT), as shells report it."""

EXPECTED = (AsyncProvError, KeyboardInterrupt)


class UsageError(Exception):
    """A command line or file that cannot be acted on (exit status 2)."""


def exit_status(error: BaseException, err: TextIO) -> int:
    """Write the one line an expected failure gets (never a traceback) and return its
    exit status: ``UsageError`` 2, an asyncprov error 1, Ctrl-C 130."""
    if isinstance(error, UsageError):
        err.write(f"asyncprov: {error}\n")
        return EXIT_USAGE
    if isinstance(error, KeyboardInterrupt):
        err.write("asyncprov: interrupted\n")
        return EXIT_INTERRUPTED
    err.write(f"asyncprov: {type(error).__name__}: {error}\n")
    return EXIT_FAILED
