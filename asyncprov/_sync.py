"""``Client``: the synchronous twin of ``AsyncClient``, with no logic of its own.

Each ``Client`` owns one long-lived event loop in a daemon thread (an anyio blocking
portal) and forwards every call to an ``AsyncClient`` living there. Because the loop is
its own, it works from code that already runs an event loop (Jupyter) and from many
threads at once.
"""

from __future__ import annotations

import functools
import queue
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack, overload

from pydantic import BaseModel

from ._client import AsyncClient
from ._closing import Closeable
from ._errors import ClientClosedError
from ._http import DEFAULT_CONNECTION_LIMIT
from ._images import DEFAULT_MAX_IMAGE_BYTES
from ._loop_thread import End, LoopThread, Pump, close_pump, shutdown
from ._options import BATCH_CONCURRENCY, DEFAULT_MAX_RETRIES
from ._registry import ProviderInput
from ._request import CreateOptions, MessagesInput, ParseOptions
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._streaming import AsyncStream
from ._telemetry import Telemetry
from ._timeouts import TimeoutInput
from ._types import Attempt, ChatCompletion, ChatCompletionChunk

if TYPE_CHECKING:  # the batch and rate-limit modules load when first used
    from ._batch import BatchProgress, BatchRequest
    from ._ratelimit import RateLimit, RateLimits
    from ._shared import SharedStateInput
    from ._sync_batch import Batch

__all__ = ["Client", "Stream"]


class Stream(Closeable, Iterator[ChatCompletionChunk]):
    """A streamed chat completion for sync code: an iterator of ``ChatCompletionChunk``.

    Chunks are read on the client's loop thread and handed over in batches, so the
    per-chunk cost stays close to the async stream's. Use ``with`` or ``close()`` to
    release the connection early; breaking out and dropping the object also closes it.
    """

    def __init__(self, loop: LoopThread, stream: AsyncStream) -> None:
        self._loop = loop
        self._stream = stream
        self._pump = Pump(stream)
        self._ready: deque[ChatCompletionChunk] = deque()
        self._done = False
        self._finalizer = weakref.finalize(self, close_pump, loop, self._pump)

    @property
    def provider(self) -> str | None:
        """The provider answering."""
        return self._stream.provider

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        """Every try the call made, in the order they ended (hedge losers end last)."""
        return self._stream.attempts

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._stream.text

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._ready:
            return self._ready.popleft()
        if self._done:
            raise StopIteration
        pump = self._pump
        loop = self._loop
        if not pump.started:
            if not loop.is_usable:  # e.g. a stream made before os.fork(), read in the child
                self._done = True
                raise ClientClosedError("the client's event loop is gone (closed, or a fork)")
            pump.started = True
            pump._requested = True  # the first batch is wanted at once
            try:
                loop.portal.start_task_soon(pump.run)
            except RuntimeError:
                self.close()
                raise ClientClosedError("the client is closed") from None
        else:
            pump.ask()
        while True:
            try:
                item = pump.queue.get(timeout=1.0)
                break
            except queue.Empty:  # a lost wake-up must not hang the caller forever
                if not loop.is_usable:
                    self._done = True
                    raise ClientClosedError("the client's event loop stopped") from None
        if isinstance(item, End):
            self.close()
            if item.error is not None:
                raise item.error
            raise StopIteration
        self._ready.extend(item)
        return self._ready.popleft()

    def close(self) -> None:
        """Stop reading and close the connection now."""
        self._done = True
        self._ready.clear()
        self._finalizer()

    def collect(self) -> ChatCompletion:
        """Read the rest of the stream and return the completion it adds up to."""
        if self._pump.started:
            raise RuntimeError("collect() must be called before iterating the stream")
        self._done = True
        self._finalizer.detach()
        return self._loop.call(self._stream.collect)


class Completions:
    """``client.chat.completions`` (sync)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @overload
    def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: Literal[False] = False,
        **options: Unpack[CreateOptions],
    ) -> ChatCompletion: ...

    @overload
    def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: Literal[True],
        **options: Unpack[CreateOptions],
    ) -> Stream: ...

    @overload
    def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: bool,
        **options: Unpack[CreateOptions],
    ) -> ChatCompletion | Stream: ...

    def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: bool = False,
        **options: Any,
    ) -> ChatCompletion | Stream:
        """Create a chat completion; the arguments are those of ``AsyncClient``'s
        ``chat.completions.create``. With ``stream=True`` returns a ``Stream``."""
        loop = self._client._running_loop()
        result = loop.call(
            functools.partial(
                self._client._async.chat.completions.create,
                model,
                messages,
                stream=stream,
                **options,
            )
        )
        if isinstance(result, AsyncStream):
            return Stream(loop, result)
        return result

    def parse(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        response_format: type[BaseModel],
        **options: Unpack[ParseOptions],
    ) -> ChatCompletion:
        """A whole completion validated into ``response_format``; the arguments are
        those of ``AsyncClient``'s ``chat.completions.parse``."""
        loop = self._client._running_loop()
        return loop.call(
            functools.partial(
                self._client._async.chat.completions.parse,
                model,
                messages,
                response_format=response_format,
                **options,
            )
        )

    def batch(
        self,
        requests: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        *,
        concurrency: int = BATCH_CONCURRENCY,
        ordered: bool = False,
        progress: Callable[[BatchProgress], object] | None = None,
        **defaults: Any,
    ) -> Batch:
        """Run many non-streamed requests, at most ``concurrency`` at a time; the
        arguments are those of ``AsyncClient``'s ``chat.completions.batch``.

        Example:
            >>> with client.chat.completions.batch(requests, model="m") as results:
            ...     for result in results:
            ...         print(result.custom_id, result.ok)
        """
        from ._sync_batch import Batch

        loop = self._client._running_loop()
        batch = self._client._async.chat.completions.batch(
            requests, concurrency=concurrency, ordered=ordered, progress=progress, **defaults
        )
        return Batch(loop, batch)


class Chat:
    """``client.chat`` (sync)."""

    def __init__(self, client: Client) -> None:
        self.completions = Completions(client)


class Client(Closeable):
    """A synchronous client, the twin of ``AsyncClient`` (same arguments).

    Example:
        >>> with Client(base_url="http://127.0.0.1:8000/v1") as client:
        ...     for chunk in client.chat.completions.create(
        ...             model="m", messages="Hi", stream=True):
        ...         print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(
        self,
        provider: ProviderInput | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        proxies: Mapping[str, str] | None = None,
        proxy: str | None = None,
        timeout: TimeoutInput = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        rate_limits: Mapping[str, RateLimit] | None = None,
        shared_state: SharedStateInput | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if rate_limits is not None:
            from ._ratelimit import RateLimits

            if not isinstance(rate_limits, RateLimits):
                rate_limits = RateLimits(rate_limits)  # one registry, kept across a fork
        self._options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "proxies": proxies,
            "proxy": proxy,
            "timeout": timeout,
            "max_retries": max_retries,
            "headers": headers,
            "max_event_size": max_event_size,
            "max_image_bytes": max_image_bytes,
            "connection_limit": connection_limit,
            "rate_limits": rate_limits,
            "shared_state": shared_state,
            "telemetry": telemetry,
        }
        self._provider = provider
        self._async = AsyncClient(provider, **self._options)
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.chat = Chat(self)

    @property
    def rate_limits(self) -> RateLimits:
        """The per-provider rate limits (see ``AsyncClient.rate_limits``)."""
        limits = self._async.rate_limits
        self._options["rate_limits"] = limits
        return limits

    def __repr__(self) -> str:
        return "Client" + repr(self._async).removeprefix("AsyncClient")

    def _running_loop(self) -> LoopThread:
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            if self._loop is not None and not self._loop.is_usable:
                # Forked child: the loop thread is gone and its sockets are the
                # parent's. Start afresh without touching them.
                if self._finalizer is not None:
                    self._finalizer.detach()
                self._loop = None
                self._async = AsyncClient(self._provider, **self._options)
            if self._loop is None:
                self._loop = LoopThread()
                self._finalizer = weakref.finalize(self, shutdown, self._loop, self._async)
            return self._loop

    def close(self) -> None:
        """Close every connection and stop the client's loop thread."""
        with self._lock:
            self._closed = True
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()
