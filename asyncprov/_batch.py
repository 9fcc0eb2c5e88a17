"""Batch runs: many requests through one client, a bounded number in flight.

One task group per run, held by ``AsyncBatch`` as an async context manager (never by a
generator). Inside it ``concurrency`` workers each pull the next request from the input
only when they are free, so the input is never materialised (and no task is spawned per
request: a pool is measurably cheaper at thousands of requests a second). Each request
ends as one ``BatchResult``, error or not. With ``ordered=True`` finished results wait
in a reorder buffer; intake pauses while requests in flight plus waiting results reach
twice ``concurrency``. anyio is imported on first use, keeping ``import asyncprov`` light.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeAlias

from ._batch_results import BatchProgress, BatchResult, failure, result
from ._clock import clock
from ._errors import ConfigurationError, InvalidRequestError
from ._options import BATCH_CONCURRENCY
from ._types import ChatCompletion

if TYPE_CHECKING:
    import anyio
    from anyio.abc import TaskGroup

    from ._client import AsyncCompletions

__all__ = ["AsyncBatch", "BatchProgress", "BatchRequest", "BatchResult"]

BatchRequest: TypeAlias = Mapping[str, Any]
"""One request of a batch: the keyword arguments of ``create()``, plus an optional
``custom_id`` that its result carries back."""


class _Results:
    """The hand-off from the workers to the caller: a bounded queue.

    Unlike an anyio memory stream it does not yield to the loop on every item: a
    worker with room, or a caller with results waiting, carries on at once. That saves
    two loop turns per request, a third of the batch layer's cost at high rates.
    """

    def __init__(self, size: int) -> None:
        self._items: deque[BatchResult] = deque()
        self._size = size
        self._readable: anyio.Event | None = None  # the caller waits for results
        self._writable: anyio.Event | None = None  # workers wait for room
        self.closed = False  # no more results will come
        self.abandoned = False  # the caller will take no more

    async def put(self, item: BatchResult) -> None:
        import anyio

        while len(self._items) >= self._size and not self.abandoned:
            if self._writable is None:
                self._writable = anyio.Event()
            await self._writable.wait()
        if self.abandoned:
            return
        self._items.append(item)
        if self._readable is not None:
            self._readable.set()
            self._readable = None

    async def get(self) -> BatchResult | None:
        """The next result, or ``None`` once every result has been taken."""
        import anyio

        while not self._items:
            if self.closed or self.abandoned:
                return None
            if self._readable is None:
                self._readable = anyio.Event()
            await self._readable.wait()
        item = self._items.popleft()
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        return item

    def close(self) -> None:
        self.closed = True
        if self._readable is not None:
            self._readable.set()
            self._readable = None

    def abandon(self) -> None:
        self.abandoned = True
        self._items.clear()
        if self._writable is not None:
            self._writable.set()
            self._writable = None


class AsyncBatch:
    """A running batch: an async context manager, then an async iterator of results.

    Made by ``client.chat.completions.batch(...)``; see there. Leaving the ``async
    with`` block cancels whatever is still in flight.

    Example:
        >>> async with client.chat.completions.batch(requests, concurrency=32) as results:
        ...     async for result in results:
        ...         print(result.custom_id, result.ok)
    """

    def __init__(
        self,
        completions: AsyncCompletions,
        requests: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        *,
        concurrency: int = BATCH_CONCURRENCY,
        ordered: bool = False,
        progress: Callable[[BatchProgress], object] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number >= 1, not {concurrency!r}"
            )
        self._completions = completions
        self.concurrency = concurrency
        self.ordered = ordered
        self._progress = progress
        self._defaults = dict(defaults or {})
        if isinstance(requests, AsyncIterable):
            self._sync_input: Iterator[BatchRequest] | None = None
            self._async_input: AsyncIterator[BatchRequest] | None = aiter(requests)
        else:
            self._sync_input, self._async_input = iter(requests), None
        self._next_index = 0
        self._group: TaskGroup | None = None
        # Made on entry, inside the running loop (a sync Client builds this elsewhere).
        self._work_scope: anyio.CancelScope | None = None
        self._pull_lock: anyio.Lock | None = None
        self._pulls: set[anyio.CancelScope] = set()
        self._cancelling = False
        self._results: _Results | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._started_at = 0.0
        # Counters behind ``progress``.
        self._done = self._failed = self._in_flight = 0
        self._prompt_tokens = self._completion_tokens = self._total_tokens = 0
        # Ordered mode: finished results waiting for the ones before them.
        self._pending: dict[int, BatchResult] = {}
        self._next_out = 0
        self._flushing = False
        self._window: anyio.Semaphore | None = None
        self._pool: TaskGroup | None = None
        self._workers = 0
        self.cancelled = False
        """Whether ``cancel()`` dropped requests that were in flight."""

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
            elapsed=(clock() - self._started_at) if self._started_at else 0.0,
        )

    def stop(self) -> None:
        """Take no new requests; those in flight finish and are still yielded."""
        self._stopping = True
        for scope in self._pulls:  # a worker waiting on an async input gives up
            scope.cancel()

    def cancel(self) -> None:
        """Take no new requests and drop those in flight; iteration then ends."""
        self._stopping = self._cancelling = True
        if self._in_flight:
            self.cancelled = True
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def __aenter__(self) -> Self:
        import anyio

        if self._group is not None:
            raise ConfigurationError("a batch runs once; make a new one to run again")
        if self.ordered:  # in flight + waiting in the reorder buffer <= 2 x concurrency
            self._window = anyio.Semaphore(self.concurrency * 2)
        self._results = _Results(self.concurrency)
        self._work_scope = anyio.CancelScope()
        if self._async_input is not None:
            self._pull_lock = anyio.Lock()
        if self._cancelling:
            self._work_scope.cancel()
        self._started_at = clock()
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
        assert self._group is not None and self._results is not None
        try:
            return await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The caller's own exception from the block: give it back as it was raised
            # (the work tasks never raise, so the group holds nothing else).
            if exc is not None and group.exceptions == (exc,):
                return False
            raise
        finally:
            self._results.abandon()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BatchResult:
        results = self._results
        if results is None:
            raise ConfigurationError(
                "enter the batch first: `async with client.chat.completions.batch(...) as "
                "results: async for result in results: ...`"
            )
        result = await results.get()
        if result is not None:
            return result
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration

    # --- the work ---------------------------------------------------------------------

    async def _run_all(self) -> None:
        import anyio

        assert self._results is not None and self._work_scope is not None
        try:
            with self._work_scope:
                async with anyio.create_task_group() as group:
                    # One worker to begin with; each that takes a request adds another
                    # until `concurrency` run, so a short input never starts them all.
                    self._pool = group
                    self._workers = 1
                    group.start_soon(self._worker)
        finally:
            self._pool = None
            self._results.close()  # the caller's iteration ends once it has taken the rest
            aclose = getattr(self._async_input, "aclose", None)
            if aclose is not None:  # an async generator given as input is finalized here
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()

    def _input_failed(self, error: Exception) -> None:
        """The caller's input (or progress callback) failed: take no more requests;
        the error is raised once the requests in flight are yielded."""
        if self._error is None:
            self._error = error
        self.stop()

    async def _pull(self) -> BatchRequest | None:
        """The next request, or ``None`` when there are no more to take."""
        if self._stopping:
            return None
        sync_input = self._sync_input
        try:
            if sync_input is not None:
                return next(sync_input)
            return await self._pull_async()
        except (StopIteration, StopAsyncIteration):
            self._stopping = True
        except Exception as error:
            self._input_failed(error)
        return None

    async def _pull_async(self) -> BatchRequest | None:
        import anyio

        assert self._pull_lock is not None and self._async_input is not None
        async with self._pull_lock:  # an async generator takes one anext() at a time
            if self._stopping:
                return None
            with anyio.CancelScope() as scope:
                self._pulls.add(scope)
                try:
                    return await anext(self._async_input)
                finally:
                    self._pulls.discard(scope)
            return None  # stop() cancelled the wait

    async def _worker(self) -> None:
        window = self._window
        results = self._results
        assert results is not None
        while not self._stopping:
            if window is not None:
                await window.acquire()
            request = await self._pull()
            if request is None:
                if window is not None:
                    window.release()
                return
            if self._workers < self.concurrency and self._pool is not None:
                self._workers += 1
                self._pool.start_soon(self._worker)
            index = self._next_index
            self._next_index += 1
            self._in_flight += 1
            # No local keeps the result: held here, it would stay alive (completion,
            # attempts and all) while this worker's next request is in flight.
            await self._finish(index, await self._run_one(index, request), results, window)

    async def _finish(
        self, index: int, result: BatchResult, results: _Results, window: Any
    ) -> None:
        """Count a finished request and hand its result on."""
        self._in_flight -= 1
        if result.completion is not None:
            self._done += 1
            usage = result.usage
            if usage is not None:
                self._prompt_tokens += usage.prompt_tokens
                self._completion_tokens += usage.completion_tokens
                self._total_tokens += usage.total_tokens
        else:
            self._failed += 1
        if self._progress is not None:
            try:
                self._progress(self.progress)
            except Exception as error:  # a broken callback stops intake, not results
                self._input_failed(error)
        if window is None:
            await results.put(result)
        else:
            await self._emit_in_order(index, result, window)

    async def _emit_in_order(self, index: int, result: BatchResult, window: Any) -> None:
        self._pending[index] = result
        if self._flushing:
            return  # the worker flushing the head of the line sends this one too
        self._flushing = True
        assert self._results is not None
        try:
            while self._next_out in self._pending:
                head = self._pending.pop(self._next_out)
                await self._results.put(head)
                self._next_out += 1
                window.release()
        finally:
            self._flushing = False

    async def _run_one(self, index: int, request: BatchRequest) -> BatchResult:
        started = clock()
        custom_id: str | None = None
        try:
            if not isinstance(request, Mapping):
                raise InvalidRequestError(
                    f"a batch request must be a dict of create() arguments, not "
                    f"{type(request).__name__}"
                )
            arguments = {**self._defaults, **request} if self._defaults else dict(request)
            raw_id = arguments.pop("custom_id", None)
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                raw_id = str(raw_id)
            if raw_id is not None and not isinstance(raw_id, str):
                raise InvalidRequestError(
                    f"custom_id must be a string, not {type(raw_id).__name__}"
                )
            custom_id = raw_id
            if arguments.pop("stream", False):
                raise InvalidRequestError("batch requests cannot stream (stream=True)")
            completion: ChatCompletion = await self._completions.create(**arguments)
        except Exception as error:  # every failure becomes this request's result
            return failure(index, custom_id, error, started)
        return result(
            custom_id,
            index,
            completion,
            provider=completion.provider,
            attempts=completion.attempts,
            latency=round(clock() - started, 6),
            usage=completion.usage,
        )
