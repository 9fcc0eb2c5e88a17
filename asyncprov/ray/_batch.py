"""``RayBatch``: a batch run spread over the workers of a Ray cluster.

The driver (this process) reads the input as workers free up and owns every result:
it keeps ``lanes`` chunks of requests in flight per worker (``concurrency`` requests in
all per worker), each chunk one actor call that returns the chunk's results together.
A chunk either comes back whole or is lost with its worker; a lost chunk is sent again
(to the worker's replacement) and its results arrive once, so every request ends as
exactly one ``BatchResult`` — the same results, progress and ``stop()``/``cancel()`` as
``client.chat.completions.batch(...)``. Ray is imported when a batch starts.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from asyncprov import (
    AsyncClient,
    BatchProgress,
    BatchRequest,
    BatchResult,
    ConfigurationError,
    InvalidRequestError,
    RateLimitStats,
)

from ._pool import BatchWorkerError, Slot, WorkerPool, divide_limits, first_line
from ._worker import rebuild_error

if TYPE_CHECKING:
    import anyio
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["RayBatch"]

_LANES = 4
"""Chunks in flight per worker: while one chunk's slowest request finishes, the
others keep the worker busy."""


@dataclass
class _Entry:
    index: int
    request: BatchRequest
    losses: int = 0  # times its chunk was lost with a worker


def _clock() -> float:
    import time

    return time.monotonic()


def _unsendable(entry: _Entry, number: int, error: Exception) -> BatchResult:
    """The result of a request that could not be sent to a worker (numbered, as a
    worker numbers its results, by its place in the chunk)."""
    custom_id = entry.request.get("custom_id") if isinstance(entry.request, Mapping) else None
    failure = InvalidRequestError(
        f"the request cannot be sent to a Ray worker: {first_line(error)}"
    )
    return BatchResult(
        custom_id=str(custom_id) if custom_id is not None else None,
        index=number,
        error=failure,
        error_type=type(failure).__name__,
        error_message=str(failure),
    )


class RayBatch:
    """A batch run on a Ray cluster: an async context manager, then an async iterator
    of ``BatchResult`` (as ``client.chat.completions.batch(...)`` gives).

    Args:
        requests: ``create()`` arguments, each with an optional ``custom_id``; read
            only as workers have room, so a generator over a huge file stays lazy.
        address: the Ray cluster (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://..."``).
            ``None`` does what ``ray.init()`` does: ``RAY_ADDRESS``, else a cluster
            started on this machine with ``ray start``, else a local one for this run.
            When Ray is already initialized in this process, that connection is used.
        workers: Ray actors, each holding one ``AsyncClient`` (default 2).
        concurrency: requests in flight per worker (default 64).
        worker_cpus: CPUs Ray reserves for each worker (default 1; a fraction packs
            more workers on a node).
        max_worker_deaths: a worker that dies this many times in a row without
            finishing a chunk (or a chunk lost this many times) stops the batch with
            ``BatchWorkerError`` (default 3).
        runtime_env: Ray's ``runtime_env`` for the workers (e.g. ``{"pip": [...]}``).
        progress: called on the driver after every result with a ``BatchProgress``.
        **client_options: ``AsyncClient`` arguments for every worker's client
            (``provider``, ``base_url``, ``api_key``, ``timeout``, ``max_retries``,
            ``rate_limits``, ``shared_state``, ...). Without ``shared_state`` each
            worker gets ``rate_limits`` divided by ``workers``; with it every worker
            shares the whole budgets through Redis.

    Example:
        >>> async with RayBatch(requests, workers=4, base_url=url) as results:
        ...     async for result in results:
        ...         print(result.custom_id, result.ok)
    """

    def __init__(
        self,
        requests: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        *,
        address: str | None = None,
        workers: int = 2,
        concurrency: int = 64,
        worker_cpus: float = 1.0,
        max_worker_deaths: int = 3,
        runtime_env: Mapping[str, Any] | None = None,
        progress: Callable[[BatchProgress], object] | None = None,
        **client_options: Any,
    ) -> None:
        for name, value in (
            ("workers", workers),
            ("concurrency", concurrency),
            ("max_worker_deaths", max_worker_deaths),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a whole number >= 1, not {value!r}")
        if not (worker_cpus >= 0 and math.isfinite(worker_cpus)):
            raise ConfigurationError(f"worker_cpus must be 0 or more, not {worker_cpus!r}")
        self.workers = workers
        self.concurrency = concurrency
        self.max_worker_deaths = max_worker_deaths
        self._progress = progress
        options = dict(client_options)
        try:  # checked here, where a mistake is one error, not a worker dying at start
            AsyncClient(**options)
        except TypeError as error:
            raise ConfigurationError(f"RayBatch: {error}") from None
        if options.get("shared_state") is None:
            options["rate_limits"] = divide_limits(options.get("rate_limits"), workers)
        self._pool = WorkerPool(
            address=address,
            workers=workers,
            worker_cpus=worker_cpus,
            max_worker_deaths=max_worker_deaths,
            runtime_env=runtime_env,
            client_options=options,
        )
        self._chunk = max(1, math.ceil(concurrency / _LANES))
        self._lanes = min(_LANES, concurrency)
        if isinstance(requests, AsyncIterable):
            self._sync_input: Iterator[BatchRequest] | None = None
            self._async_input: AsyncIterator[BatchRequest] | None = aiter(requests)
        else:
            self._sync_input, self._async_input = iter(requests), None
        self._next_index = 0
        self._requeued: deque[list[_Entry]] = deque()
        self._sendable: deque[list[_Entry]] = deque()
        self._entered = False
        self._stopping = False
        self._cancelling = False
        self._error: BaseException | None = None
        self._work_scope: anyio.CancelScope | None = None
        self._pull_lock: anyio.Lock | None = None
        self._group: Any = None
        self._send: MemoryObjectSendStream[BatchResult] | None = None
        self._receive: MemoryObjectReceiveStream[BatchResult] | None = None
        self._providers: set[str] = set()
        self._started_at = 0.0
        self._done = self._failed = self._in_flight = 0
        self._prompt_tokens = self._completion_tokens = self._total_tokens = 0
        self.cancelled = False
        """Whether ``cancel()`` dropped requests that were in flight."""
        self.resent = 0
        """Requests sent again because the worker running them died: each may have
        reached the provider twice (sent, then lost before its result came back)."""
        self.rate_limit_stats: dict[str, RateLimitStats] = {}
        """Each provider's rate-limit counters summed over the workers (filled once
        the batch has run to its end)."""

    @property
    def worker_deaths(self) -> int:
        """Workers that died (and were replaced) during the run."""
        return self._pool.deaths

    @property
    def progress(self) -> BatchProgress:
        """The counters now."""
        return BatchProgress.model_construct(
            done=self._done,
            failed=self._failed,
            in_flight=self._in_flight,
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            total_tokens=self._total_tokens,
            elapsed=(_clock() - self._started_at) if self._started_at else 0.0,
        )

    def stop(self) -> None:
        """Take no new requests; those in flight finish and are still yielded."""
        self._stopping = True

    def cancel(self) -> None:
        """Take no new requests and drop those in flight; iteration then ends."""
        self._stopping = self._cancelling = True
        if self._in_flight:
            self.cancelled = True
        if self._work_scope is not None:
            self._work_scope.cancel()

    # --- lifetime ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        import anyio

        if self._entered:
            raise ConfigurationError("a batch runs once; make a new one to run again")
        self._entered = True
        self._pool.start()
        self._send, self._receive = anyio.create_memory_object_stream[BatchResult](
            self.workers * self.concurrency
        )
        self._work_scope = anyio.CancelScope()
        if self._cancelling:
            self._work_scope.cancel()
        if self._async_input is not None:
            self._pull_lock = anyio.Lock()
        self._started_at = _clock()
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._run_all)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.cancel()
        assert self._group is not None and self._receive is not None
        try:
            return await self._group.__aexit__(exc_type, exc, tb)  # type: ignore[no-any-return]
        except BaseExceptionGroup as group:
            if exc is not None and group.exceptions == (exc,):
                return False
            raise
        finally:
            self._receive.close()
            self._pool.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BatchResult:
        import anyio

        if self._receive is None:
            raise ConfigurationError(
                "enter the batch first: `async with RayBatch(...) as results: "
                "async for result in results: ...`"
            )
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._error is not None:
                error, self._error = self._error, None
                raise error from None
            raise StopAsyncIteration from None

    # --- the work ----------------------------------------------------------------------

    async def _run_all(self) -> None:
        import anyio

        assert self._send is not None and self._work_scope is not None
        try:
            with self._work_scope:
                async with anyio.create_task_group() as group:
                    for slot in self._pool.slots:
                        for _ in range(self._lanes):
                            group.start_soon(self._lane, slot)
                if self._providers:
                    self.rate_limit_stats = await self._pool.stats(sorted(self._providers))
        finally:
            self._send.close()
            aclose = getattr(self._async_input, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    def _fail(self, error: BaseException) -> None:
        """Stop the run: results already in hand are yielded, then ``error`` raised."""
        if self._error is None:
            self._error = error
        self.cancel()

    def _input_failed(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self.stop()

    async def _pull(self) -> BatchRequest | None:
        try:
            if self._sync_input is not None:
                return next(self._sync_input)
            assert self._pull_lock is not None and self._async_input is not None
            async with self._pull_lock:
                if self._stopping:
                    return None
                return await anext(self._async_input)
        except (StopIteration, StopAsyncIteration):
            self._stopping = True
        except Exception as error:
            self._input_failed(error)
        return None

    async def _next_chunk(self) -> list[_Entry] | None:
        if self._sendable:  # the rest of a chunk that held a request Ray cannot send
            return self._sendable.popleft()
        if self._requeued:  # lost with a worker: in flight still, so drained on stop()
            chunk = self._requeued.popleft()
            self.resent += len(chunk)
            return chunk
        chunk = []
        while len(chunk) < self._chunk and not self._stopping:
            request = await self._pull()
            if request is None:
                break
            chunk.append(_Entry(self._next_index, request))
            self._next_index += 1
        return chunk or None

    async def _lane(self, slot: Slot) -> None:
        from ray.exceptions import RayActorError, RayError

        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                return
            actor, generation = slot.actor, slot.generation
            self._in_flight += len(chunk)
            try:
                call = actor.run.remote([entry.request for entry in chunk])
            except Exception as error:  # a request Ray cannot send (it does not pickle)
                self._in_flight -= len(chunk)
                await self._split_unsendable(chunk, error)
                continue
            try:
                records = await call
            except RayActorError as error:
                self._in_flight -= len(chunk)
                self._lost(slot, generation, chunk, error, died=True)
                continue
            except RayError as error:  # the call failed without killing the worker
                self._in_flight -= len(chunk)
                self._lost(slot, generation, chunk, error, died=False)
                continue
            if slot.generation == generation:
                slot.deaths_in_a_row = 0
            for result, portable in records:
                self._in_flight -= 1
                await self._emit(chunk, result, portable)

    async def _split_unsendable(self, chunk: list[_Entry], error: Exception) -> None:
        """Fail the requests of ``chunk`` that cannot be pickled; send the others."""
        from ray import cloudpickle

        sendable = []
        for number, entry in enumerate(chunk):
            try:
                cloudpickle.dumps(entry.request)  # type: ignore[no-untyped-call]  # untyped in ray
            except Exception:
                await self._emit(chunk, _unsendable(entry, number, error), None)
            else:
                sendable.append(entry)
        if sendable:
            self._sendable.append(sendable)

    def _lost(
        self, slot: Slot, generation: int, chunk: list[_Entry], error: Exception, *, died: bool
    ) -> None:
        if self._cancelling:
            return
        for entry in chunk:
            entry.losses += 1
        try:
            if died:
                self._pool.died(slot, generation, error)
            if max(entry.losses for entry in chunk) >= self.max_worker_deaths:
                what = "its worker died" if died else first_line(error)
                raise BatchWorkerError(
                    f"a chunk of {len(chunk)} request(s) was lost {self.max_worker_deaths} "
                    f"times ({what})"
                )
        except BatchWorkerError as crash_loop:
            self._fail(crash_loop)
            return
        self._requeued.append(chunk)

    async def _emit(self, chunk: list[_Entry], result: BatchResult, portable: Any) -> None:
        assert self._send is not None
        # The worker numbered results within the chunk; the driver by input position.
        updates: dict[str, Any] = {"index": chunk[result.index].index}
        if portable is not None:
            updates["error"] = rebuild_error(portable)
        result = result.model_copy(update=updates)
        if result.completion is not None:
            self._done += 1
            usage = result.usage
            if usage is not None:
                self._prompt_tokens += usage.prompt_tokens
                self._completion_tokens += usage.completion_tokens
                self._total_tokens += usage.total_tokens
        else:
            self._failed += 1
        if result.provider is not None:
            self._providers.add(result.provider)
        if self._progress is not None:
            try:
                self._progress(self.progress)
            except Exception as error:  # a broken callback stops intake, not results
                self._input_failed(error)
        await self._send.send(result)
