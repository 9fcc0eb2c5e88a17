"""``BatchWorker``: what runs inside one Ray worker process. It holds one
``AsyncClient`` and runs the chunks of requests the driver sends it.

Nothing here imports Ray: the driver wraps the class with ``ray.remote`` when a batch
starts, and Ray imports this module by name in the worker process (so every node needs
the same asyncprov installed).

Results cross back to the driver pickled. asyncprov's errors do not pickle (their
constructors take keyword-only fields), so a failed result travels as its error's
class name and attributes (``Portable``) and the driver builds the same error again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from asyncprov import AsyncClient, AsyncProvError, BatchResult, RateLimitStats

__all__ = ["BatchWorker", "Portable", "portable_error", "rebuild_error"]

_PLAIN = (str, int, float, bool, type(None))


class Portable(NamedTuple):
    """An error as it crosses between processes: enough to build it again."""

    kind: str
    """The class name, looked up in ``asyncprov`` on the driver."""
    message: str
    fields: dict[str, Any]
    """The error's attributes that are plain values (status, body, provider, ...)."""


def portable_error(error: BaseException) -> Portable:
    fields = {
        name: value
        for name, value in vars(error).items()
        if isinstance(value, _PLAIN) and not name.startswith("_")
    }
    return Portable(type(error).__name__, str(error), fields)


def rebuild_error(portable: Portable) -> AsyncProvError:
    """The error a worker reported, as the same asyncprov class (an error of another
    kind becomes a plain ``AsyncProvError`` with its message)."""
    import asyncprov

    cls = getattr(asyncprov, portable.kind, None)
    if not (isinstance(cls, type) and issubclass(cls, AsyncProvError)):
        return AsyncProvError(portable.message)
    # Built without its constructor (keyword-only fields): the worker's instance had
    # them already checked; its plain attributes are copied back as they were.
    error: AsyncProvError
    if issubclass(cls, BaseExceptionGroup):  # its members stay on the worker
        error = cls(portable.message, [AsyncProvError(portable.message)])
    else:
        error = cls.__new__(cls)
        Exception.__init__(error, portable.message)
    vars(error).update(portable.fields)
    return error


class BatchWorker:
    """One worker of a Ray batch: one ``AsyncClient``, a chunk of requests per call.

    Args:
        client_options: ``AsyncClient`` keyword arguments (provider, base URL, limits,
            shared state, ...), the same in every worker.
        keys: provider key variables from the driver's environment, set here where
            they are not set already (a worker on another machine has its own).
    """

    def __init__(self, client_options: Mapping[str, Any], keys: Mapping[str, str]) -> None:
        for name, value in keys.items():
            os.environ.setdefault(name, value)
        self._options = dict(client_options)
        self._client: AsyncClient | None = None

    def pid(self) -> int:
        """This worker's process id (tests kill it)."""
        return os.getpid()

    async def run(
        self, requests: list[dict[str, Any]]
    ) -> list[tuple[BatchResult, Portable | None]]:
        """Run one chunk, all at once; every request ends as one result, in any order
        (``index`` is the position in the chunk)."""
        if self._client is None:  # made on this actor's event loop
            self._client = AsyncClient(**self._options)
        client = self._client
        finished: list[tuple[BatchResult, Portable | None]] = []
        async with client.chat.completions.batch(requests, concurrency=len(requests)) as results:
            async for result in results:
                error = result.error
                if error is None:
                    finished.append((result, None))
                else:
                    finished.append(
                        (result.model_copy(update={"error": None}), portable_error(error))
                    )
        return finished

    def stats(self, names: list[str]) -> dict[str, RateLimitStats]:
        """This worker's rate-limit counters for each provider name."""
        if self._client is None:
            return {}
        return {name: self._client.rate_limits.stats(name) for name in names}

    async def close(self) -> None:
        """Close the client (its connections) before the worker is let go."""
        if self._client is not None:
            await self._client.aclose()
