"""The stream object callers iterate, and the caller-side fold for non-streaming calls.

The stream pulls chunks from a provider's async generator one ``await`` at a time (no
task, no cancel scope held across a ``yield``), tells the attempt's deadline when
content arrives, and turns any failure after content into ``StreamInterruptedError``
with the partial text (the specific error as its ``__cause__``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Self

from ._accumulate import CompletionAccumulator
from ._closing import AsyncCloseable
from ._errors import APIError, APITimeoutError, StreamInterruptedError, StreamTimeoutError
from ._http import HttpCall
from ._timeouts import Deadline
from ._types import Attempt, ChatCompletion, ChatCompletionChunk, ChatRequest
from .providers.base import Provider

__all__ = ["AsyncStream", "complete"]


class AsyncStream(AsyncCloseable, AsyncIterator[ChatCompletionChunk]):
    """A streamed chat completion: an async iterator of ``ChatCompletionChunk``.

    Use it in ``async with`` (or call ``aclose()``) to release the connection as soon
    as you stop reading; breaking out of the loop and dropping the object also closes
    it.

    Example:
        >>> async with await client.chat.completions.create(..., stream=True) as stream:
        ...     async for chunk in stream:
        ...         print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(
        self,
        source: AsyncGenerator[ChatCompletionChunk, None],
        deadline: Deadline,
        *,
        provider: str | None = None,
        model: str | None = None,
        abort: Callable[[], None] | None = None,
        on_usage: Callable[[str | None, int], None] | None = None,
    ) -> None:
        self._source = source
        self._abort = abort
        self._on_usage = on_usage  # reported usage settles a rate limiter's reservation
        self._deadline = deadline
        self._parts: list[str] = []
        self._head: deque[ChatCompletionChunk] = deque()
        self._finished = False
        self.provider = provider
        """The provider answering (as far as known before the first chunk)."""
        self.model = model
        self.attempts: tuple[Attempt, ...] = ()
        """Every try the call made, in the order they ended (hedge losers end last)."""

    def _intercept(
        self,
        wrap: Callable[
            [AsyncGenerator[ChatCompletionChunk, None], Sequence[ChatCompletionChunk]],
            AsyncGenerator[ChatCompletionChunk, None],
        ],
    ) -> bool:
        """Put ``wrap(source, head)`` between this stream and its source (telemetry, when
        on; ``head``: the chunks read ahead, served first). False when the source has
        ended already."""
        if self._finished:
            return False
        self._source = wrap(self._source, tuple(self._head))
        return True

    def _hold_idle(self) -> None:
        """For readers that buffer ahead of their consumer: while held, the consumer's
        own time does not count as idle (see ``_release_idle``)."""
        self._deadline.hold()

    def _release_idle(self) -> None:
        """The consumer wants more chunks: the idle clock runs again."""
        self._deadline.release()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    async def _start(self) -> None:
        # Read up to the first content chunk now, so that every failure before content
        # (connection, status, timeouts, error events) surfaces from ``await create()``.
        head: list[ChatCompletionChunk] = []  # kept aside: __anext__ serves _head first
        while not self._deadline.has_content:
            try:
                chunk = await self.__anext__()
            except StopAsyncIteration:
                break
            head.append(chunk)
            self.provider = chunk.provider or self.provider
        self._head.extend(head)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        # The per-chunk path: kept flat (no helper calls) because it runs for every chunk.
        if self._head:
            return self._head.popleft()
        if self._finished:
            raise StopAsyncIteration
        deadline = self._deadline
        deadline.back()  # the caller's own time between chunks is not idle time
        try:
            chunk = await self._source.__anext__()
        except StopAsyncIteration:
            self._finished = True
            raise
        except APIError as exc:
            self._finished = True
            raise self._with_partial(exc)  # noqa: B904 (cause kept on the error)
        except BaseException:
            self._finished = True
            raise
        on_usage = self._on_usage  # set only when a rate limit counts tokens
        if on_usage is not None and chunk.usage is not None:
            on_usage(chunk.provider or self.provider, chunk.usage.total_tokens)
        choices = chunk.choices
        if choices:
            first = choices[0]
            text = first.delta.content if first.index == 0 else None
        else:
            text = None
        if text:
            self._parts.append(text)
            deadline.delivered(True)
        else:
            deadline.delivered(chunk.is_progress())
        return chunk

    def _with_partial(self, exc: APIError) -> APIError:
        """The error to raise: after content, always ``StreamInterruptedError`` with the
        text already delivered (the specific failure as its cause)."""
        if not self._deadline.has_content:
            return exc
        text = self.text
        if isinstance(exc, StreamInterruptedError):
            exc.partial_text = text
            return exc
        exc.partial_text = text
        message = f"the stream broke off after content: {type(exc).__name__}: {exc.message}"
        interrupted: StreamInterruptedError
        if isinstance(exc, APITimeoutError):  # still a timeout for `except TimeoutError`
            interrupted = StreamTimeoutError(
                message,
                phase=exc.phase,
                timeout=exc.timeout,
                provider=exc.provider,
                model=exc.model,
                partial_text=text,
            )
        else:
            interrupted = StreamInterruptedError(
                message, provider=exc.provider, model=exc.model, partial_text=text
            )
        interrupted.__cause__ = exc
        return interrupted

    async def aclose(self) -> None:
        """Stop reading and close the connection now (also from another task)."""
        self._finished = True
        self._head.clear()
        if getattr(self._source, "ag_running", False):
            # Another task is inside __anext__: cut the connection under it; that reader
            # then ends with a typed error and the generator finishes in its task.
            if self._abort is not None:
                self._abort()
            return
        await self._source.aclose()

    async def collect(self) -> ChatCompletion:
        """Read the rest of the stream and return the completion it adds up to."""
        folded = CompletionAccumulator()
        async with self:
            async for chunk in self:
                folded.add(chunk)
        completion = folded.completion(provider=self.provider)
        completion.__dict__["attempts"] = self.attempts
        return completion


def complete(provider: Provider, request: ChatRequest, http: HttpCall) -> Awaitable[ChatCompletion]:
    """A whole completion, one attempt: the provider's native call, or its stream folded
    (``Provider.complete``); either way ``first_chunk`` bounds it to the last byte. (A
    plain function handing back the provider's coroutine: no frame of its own.)"""
    return provider.complete(request, http)
