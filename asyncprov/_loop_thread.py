"""The sync client's machinery: an event loop in a daemon thread (an anyio blocking
portal), and the pump that hands a stream's chunks to the consumer thread in batches.
anyio is imported where first needed, keeping ``import asyncprov`` light."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ._client import AsyncClient
from ._errors import ClientClosedError
from ._streaming import AsyncStream
from ._types import ChatCompletionChunk

if TYPE_CHECKING:
    import anyio
    from anyio.from_thread import BlockingPortal

__all__ = ["End", "LoopThread", "Pump", "close_pump", "shutdown"]

_T = TypeVar("_T")
# Chunks per batch: 64 chunks are about 640 GC-tracked objects, under the collector's
# 700-allocation threshold. Larger batches get collected while in flight and promoted
# to the old generation: at 96, a 20k-chunk stream pays about 210 young and 2 full
# collections (20-30 ms each) instead of about 27 and none.
_BUFFER = 64


class LoopThread:
    """An event loop in a daemon thread, reached through an anyio blocking portal."""

    def __init__(self) -> None:
        import anyio
        from anyio.from_thread import BlockingPortal

        ready: Future[BlockingPortal] = Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # pragma: no cover - loop failed to start
                if not ready.done():
                    ready.set_exception(exc)

        self.pid = os.getpid()
        self._cleanups: set[asyncio.Task[object]] = set()
        self._thread = threading.Thread(target=run, name="asyncprov-loop", daemon=True)
        self._thread.start()
        self.portal = ready.result()

    def is_current(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self._thread

    def schedule(self, func: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``func`` as a task on the loop, from the loop's own thread."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(func())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    @property
    def is_usable(self) -> bool:
        """False in a forked child (the loop thread did not survive the fork)."""
        return self.pid == os.getpid() and self._thread.is_alive()

    def call(self, func: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return self.portal.call(func)
        except concurrent.futures.CancelledError:
            raise ClientClosedError("the client was closed during the call") from None
        except RuntimeError as exc:
            if "portal is not running" in str(exc):
                raise ClientClosedError("the client is closed") from None
            raise

    def stop(self) -> None:
        if self._thread is threading.current_thread():  # pragma: no cover - GC in loop
            return
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, True)
        self._thread.join(timeout=5)


def shutdown(loop: LoopThread, client: AsyncClient) -> None:
    if not loop.is_usable:
        return
    with contextlib.suppress(RuntimeError, ClientClosedError):
        loop.call(client.aclose)
    loop.stop()


class End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Pump:
    """Reads an ``AsyncStream`` on the loop thread and hands chunks to the consumer
    thread in batches: one queue hand-off and one wake-up per batch, not per chunk.

    Batches alternate strictly, because under the GIL the two threads never run in
    parallel: reading while the consumer works only makes them fight over it, each
    wake-up a thread switch (and, on a busy machine, a wait for a CPU). So the reader
    reads a batch when asked, hands it over, and pauses until asked again; the hand-over
    is its last step before the loop sleeps, so the consumer wakes once, to a free GIL.
    A batch goes early when the consumer waits and nothing more can be read without
    waiting.
    """

    def __init__(self, stream: AsyncStream) -> None:
        self.stream = stream
        self.queue: queue.SimpleQueue[list[ChatCompletionChunk] | End] = queue.SimpleQueue()
        self.started = False
        self._buffer: list[ChatCompletionChunk] = []
        self._requested = False
        self._flush_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: asyncio.Future[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._finished: anyio.Event | None = None

    async def run(self) -> None:
        import anyio

        loop = self._loop = asyncio.get_running_loop()
        self._finished = anyio.Event()
        error: BaseException | None = None
        finished = False
        try:
            with anyio.CancelScope() as self._scope:
                try:
                    async for chunk in self.stream:
                        buffer = self._buffer
                        buffer.append(chunk)
                        if len(buffer) >= _BUFFER:
                            while not self._requested:  # read ahead of a busy consumer
                                await self._pause(loop)
                            # Put when this task pauses, just before the loop sleeps.
                            loop.call_soon(self.queue.put, self._take())
                            while not self._requested:  # the next batch when asked
                                await self._pause(loop)
                        elif self._requested and not self._flush_pending:
                            # Runs once this task waits: every chunk readable now goes along.
                            self._flush_pending = True
                            loop.call_soon(self._flush)
                    finished = True
                except Exception as exc:
                    error = exc
        finally:
            if not finished and error is None:  # stopped under the consumer: say so
                error = ClientClosedError("the stream (or its client) was closed while being read")
            if self._buffer:
                self.queue.put(self._buffer)
                self._buffer = []
            self.queue.put(End(error))
            self._finished.set()

    async def _pause(self, loop: asyncio.AbstractEventLoop) -> None:
        paused = self._paused = loop.create_future()
        try:
            await paused
        finally:
            self._paused = None

    def _take(self) -> list[ChatCompletionChunk]:
        batch, self._buffer = self._buffer, []
        self._requested = False
        return batch

    def _hand_over_early(self) -> None:
        """A batch for a waiting consumer while the reader waits for more."""
        self.queue.put(self._take())
        self.stream._hold_idle()  # the consumer works now; reading on is not idling

    def _flush(self) -> None:
        self._flush_pending = False
        if self._requested and self._buffer:
            self._hand_over_early()

    def request(self) -> None:
        """The consumer wants the next batch (called on the loop thread)."""
        self._requested = True
        self.stream._release_idle()
        paused = self._paused
        if paused is not None:  # the reader hands over, or reads on, itself
            if not paused.done():
                paused.set_result(None)
        elif self._buffer:
            self._hand_over_early()

    def ask(self) -> None:
        """Ask for the next batch from the consumer thread."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: run() already queued End
                self._loop.call_soon_threadsafe(self.request)

    async def shutdown(self) -> None:
        if self._scope is not None and self._finished is not None:
            self._scope.cancel()
            await self._finished.wait()
        await self.stream.aclose()


def close_pump(loop: LoopThread, pump: Pump) -> None:
    """Stop ``pump`` and close its stream, from any thread (also a finalizer's)."""
    if loop.is_usable:
        if loop.is_current():  # collected on the loop thread itself: schedule it there
            loop.schedule(pump.shutdown)
            return
        try:
            loop.call(pump.shutdown)
            return
        except (RuntimeError, ClientClosedError):
            pass  # the client was closed first, and its connections with it
    pump.queue.put(End(None))  # the loop is gone (closed, or a forked child)
