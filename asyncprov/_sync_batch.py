"""``Batch``: a batch run for sync code, on a ``Client``'s loop thread (imported when
``Client.chat.completions.batch`` is first called)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Self

from ._batch import AsyncBatch, BatchProgress, BatchResult
from ._closing import Closeable
from ._errors import ClientClosedError
from ._loop_thread import LoopThread

__all__ = ["Batch"]


class _BatchRunner:
    """Runs an ``AsyncBatch`` on the loop thread, handing results over one at a time."""

    def __init__(self, batch: AsyncBatch) -> None:
        self.batch = batch
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def open(self) -> None:
        import anyio

        self.send, self.receive = anyio.create_memory_object_stream[BatchResult]()

    async def run(self) -> None:
        try:
            async with self.send, self.batch as results:
                async for result in results:
                    await self.send.send(result)
        except Exception as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def cancel(self) -> None:
        self.batch.cancel()
        self.receive.close()  # a runner blocked on send ends at once

    async def stop(self) -> None:
        self.batch.stop()


def _close_batch(loop: LoopThread, runner: _BatchRunner, started: bool) -> None:
    if not started or not loop.is_usable:
        return
    if loop.is_current():  # collected on the loop thread itself
        loop.schedule(runner.cancel)
        return
    try:
        loop.call(runner.cancel)
    except (RuntimeError, ClientClosedError):
        return
    runner.finished.wait(5)


class Batch(Closeable, Iterator[BatchResult]):
    """A batch run for sync code: an iterator of ``BatchResult``, run on the client's
    loop thread (the input is read there too, and ``progress`` is called there).

    Use ``with`` or ``close()`` to drop the requests still in flight when you stop
    early; breaking out and dropping the object also does.
    """

    def __init__(self, loop: LoopThread, batch: AsyncBatch) -> None:
        self._loop = loop
        self._runner = _BatchRunner(batch)
        self._started = False
        self._done = False
        self._finalizer = weakref.finalize(self, _close_batch, loop, self._runner, False)

    @property
    def progress(self) -> BatchProgress:
        """The counters now."""
        return self._runner.batch.progress

    @property
    def cancelled(self) -> bool:
        """Whether closing dropped requests that were in flight."""
        return self._runner.batch.cancelled

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> BatchResult:
        import anyio

        if self._done:
            raise StopIteration
        loop = self._loop
        if not loop.is_usable:  # made before os.fork(), or its client was closed
            self._done = True
            raise ClientClosedError("the client is closed, or this batch was made before a fork")
        if not self._started:
            self._started = True
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _close_batch, loop, self._runner, True)
            self._runner.open()
            try:
                loop.portal.start_task_soon(self._runner.run)
            except RuntimeError:
                self._done = True
                raise ClientClosedError("the client is closed") from None
        try:
            return loop.call(self._runner.receive.receive)
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.close()
            error, self._runner.error = self._runner.error, None
            if error is not None:
                raise error from None
            raise StopIteration from None

    def stop(self) -> None:
        """Take no new requests; those in flight finish and are still yielded."""
        if self._started:
            self._loop.call(self._runner.stop)
        else:
            self._runner.batch.stop()

    def close(self) -> None:
        """Drop the requests still in flight and end the iteration."""
        self._done = True
        self._finalizer()
