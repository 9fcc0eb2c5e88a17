"""Exit statuses, and the one place an expected failure becomes one line and a status."""

from __future__ import annotations

from typing import TextIO

from asyncprov import APIError, AsyncProvError, ConfigurationError, HTTPStatusError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "exit_status"]

EXIT_OK = 0
EXIT_FAILED = 1
"""The request (or some requests of a batch) failed."""
EXIT_USAGE = 2
"""The command line, a file or the configuration cannot be acted on."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (or SIGINT), as shells report it."""

EXPECTED = (AsyncProvError, KeyboardInterrupt)


_FLAGS = {
    "server.client_keys_env": "--client-keys-env",
    "server.metrics_keys_env": "--metrics-keys-env",
    "server.metrics": "--metrics",
    "server.grace_period": "--grace-period",
    "server.port": "--port",
    "server.host": "--host",
    "server.workers": "--workers",
    "base_url": "--base-url",
    "api_key=...": "--api-key",
    "model=...": "--model",
    "provider=...": "--provider",
}
"""The library's and the configuration's names for what the command line calls flags."""


class UsageError(Exception):
    """A command line or file that cannot be acted on (exit status 2)."""


def exit_status(error: BaseException, err: TextIO) -> int:
    """Write the one line an expected failure gets (never a traceback) and return its
    exit status: ``UsageError`` and a configuration that cannot work 2, another
    asyncprov error 1, Ctrl-C 130."""
    if isinstance(error, UsageError):
        err.write(f"asyncprov: {error}\n")
        return EXIT_USAGE
    if isinstance(error, KeyboardInterrupt):
        err.write("asyncprov: interrupted\n")
        return EXIT_INTERRUPTED
    text = str(error)
    if isinstance(error, APIError):  # "(provider X, model m)", not keyword arguments
        where = ", ".join(
            f"{label} {value}"
            for label, value in (("provider", error.provider), ("model", error.model))
            if value
        )
        text = error.message + (f" ({where})" if where else "")
        if isinstance(error, HTTPStatusError):
            text = f"HTTP {error.status}: {text}"
    if isinstance(error, ConfigurationError):  # the library's words for settings: flags
        for words, flag in _FLAGS.items():
            text = text.replace(words, flag)
    err.write(f"asyncprov: {type(error).__name__}: {text.splitlines()[0] if text else ''}\n")
    return EXIT_USAGE if isinstance(error, ConfigurationError) else EXIT_FAILED
