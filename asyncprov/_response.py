"""The response side of the HTTP edge: what a provider reads. A response's error
statuses are already raised (``HttpCall.post``); it gives either ``events(...)``
(decoded server-sent events, with every "ended too early" check made here, once for
every provider) or ``parse(validate)`` (the whole body, validated, with a body cut short
told apart from one that is not what was asked for). Sending and every wait are bounded
by the attempt's deadline through one timer per attempt (``Watchdog``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from pydantic import ValidationError

from ._errors import (
    APIConnectionError,
    APIError,
    EventTooLargeError,
    ProviderError,
    ResponseDecodeError,
    StreamInterruptedError,
    error_for_status,
)
from ._http_errors import error_fields, is_truncated_json, proxy_auth_error
from ._sse import ServerSentEvent, SSEDecoder
from ._timeouts import Deadline

if TYPE_CHECKING:
    from ._http import HttpCall

__all__ = ["HttpResponse", "Watchdog"]

_T = TypeVar("_T")
_SNIPPET = 500
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


class Watchdog:
    """The attempt's one timer: it bounds sending the request and every read of the
    response by the attempt's deadline.

    Armed when the request is sent (``begin``): if the deadline passes before the
    response arrives, the sending task is cancelled (``HttpCall._send`` turns that into
    the deadline's typed timeout error). Once the response is attached, expiry closes
    its connection instead, and the reader raises the timeout error. The timer moves
    only when the deadline moves earlier (or when it fires early and finds the
    deadline moved later), so a network read costs a comparison, not a new timer.
    """

    __slots__ = ("_at", "_deadline", "_handle", "_loop", "_raw", "_task", "expired")

    def __init__(self, deadline: Deadline, loop: asyncio.AbstractEventLoop) -> None:
        # asyncio's loop.time() is the monotonic clock Deadline uses.
        self._loop = loop
        self._deadline = deadline
        self._raw: aiohttp.ClientResponse | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self.expired = False

    def begin(self, task: asyncio.Task[Any] | None) -> None:
        """A request is being sent by ``task``: bound it by the deadline."""
        self.disarm()
        self._raw = None
        self._task = task
        self.expired = False
        self._deadline.listener = self.arm
        self.arm()

    def attach(self, raw: aiohttp.ClientResponse) -> None:
        """The response arrived: from now on expiry closes it."""
        self._raw = raw
        self._task = None

    def arm(self) -> None:
        at = self._deadline.at()
        if at < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = at
            self._handle = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        at = self._deadline.at()
        if self._loop.time() >= at - 0.001:
            self._at = math.inf
            self.expired = True
            if self._raw is not None:
                self._raw.close()
            elif self._task is not None:
                self._task.cancel()
        else:
            self._at = at
            self._handle = self._loop.call_at(at, self._fire)

    def disarm(self) -> None:
        if self._deadline.listener == self.arm:
            self._deadline.listener = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = math.inf
        self._task = None


class HttpResponse:
    """A successful (below 400) response whose every network wait is bounded by the
    attempt's deadline. Read it with ``events`` or ``parse``."""

    __slots__ = ("_call", "_raw", "_watchdog", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, call: HttpCall, watchdog: Watchdog) -> None:
        self._raw = raw
        self._call = call
        self._watchdog = watchdog
        watchdog.attach(raw)
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        watchdog = self._watchdog  # the attempt's timer, armed when it was sent
        try:
            watchdog.arm()  # a comparison unless the deadline moved earlier
            data = await self._raw.content.readany()
        except Exception as exc:
            self._call.fail(exc)
        if not data and watchdog.expired:  # closed under the read by the timer
            call = self._call
            raise call.deadline.expired(provider=call.provider, model=call.model)
        return data

    def close(self) -> None:
        """Stop the timer (the connection itself is released by ``HttpCall.post``)."""
        self._watchdog.disarm()

    async def _read_prefix(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body, whatever goes wrong after them."""
        parts: list[bytes] = []
        size = 0
        try:
            while size < limit and (data := await self.read_chunk()):
                parts.append(data)
                size += len(data)
        except (APIConnectionError, TimeoutError):
            pass
        return b"".join(parts)[:limit]

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most ``limit`` bytes, default the call's max event size)."""
        limit = limit or self._call.max_event_size
        parts: list[bytes] = []
        size = 0
        while data := await self.read_chunk():
            parts.append(data)
            size += len(data)
            if size > limit:
                raise ResponseDecodeError(
                    f"response body larger than {limit} bytes",
                    provider=self._call.provider,
                    model=self._call.model,
                    status=self.status,
                    body=b"".join(parts)[:200],
                )
        return b"".join(parts)

    async def parse(self, validate: Callable[[bytes], _T]) -> _T:
        """The whole body, validated by ``validate`` (a pydantic ``validate_json``),
        whatever its content type. A body that does not validate raises: an error
        object as ``ProviderError``, JSON that ends early as a connection cut short
        (retried), anything else as ``ResponseDecodeError`` with a snippet."""
        payload = await self.read()
        try:
            return validate(payload)
        except ValidationError as exc:
            raise self.decode_error(payload, exc) from exc

    def decode_error(
        self, payload: bytes, exc: ValidationError | None = None, *, expected: str = "JSON"
    ) -> APIError:
        """The error for a 2xx body (or one event of it) that is not what was asked for;
        ``exc`` (from validating a whole body) tells a body cut short apart."""
        call = self._call
        mask = call.key_mask()
        message, error_type, error_code = error_fields(payload, snippet=False)
        if message is not None:
            return ProviderError(
                mask(message),
                provider=call.provider,
                model=call.model,
                error_type=error_type,
                error_code=error_code,
            )
        if exc is not None and self._close_delimited() and is_truncated_json(exc):
            return APIConnectionError(
                "the response body was cut short", provider=call.provider, model=call.model
            )
        return ResponseDecodeError(
            f"the response is not the expected {expected} "
            f"(content type {self._raw.content_type or 'none'})",
            provider=call.provider,
            model=call.model,
            status=self.status,
            body=mask(payload.decode("utf-8", "replace")),
        )

    def _close_delimited(self) -> bool:
        """Whether only the connection closing marked the body's end (no length, not
        chunked): then a body that ends early cannot be told from a complete one, except
        by its content. A framed body that arrived whole was complete."""
        headers = self._raw.headers
        return "Content-Length" not in headers and "chunked" not in headers.get(
            "Transfer-Encoding", ""
        )

    def events(self, terminator: str | None) -> _Events:
        """The body as batches of server-sent events: ``async for events in
        response.events("[DONE]")``, whatever the content type. The provider returns
        when it sees its terminator; a body that ends first raises
        ``StreamInterruptedError``. ``terminator=None``: a clean end of the body is
        the terminator (a body cut mid-line is still interrupted)."""
        return _Events(self, terminator)

    async def _status_error(self) -> APIError:
        """The typed error for a status of 400 or more, with the provider's message."""
        call = self._call
        if self.status == 407 and call.proxy is not None:
            return proxy_auth_error(call.provider, call.model)
        body = await self._read_prefix(64 * 1024)
        message, error_type, error_code = error_fields(body)
        cls = error_for_status(self.status)
        mask = call.key_mask()  # an upstream may echo the key it was sent
        return cls(
            mask(message or f"{self._raw.reason or 'error'}"),
            status=self.status,
            provider=call.provider,
            model=call.model,
            body=mask(body.decode("utf-8", "replace")),
            headers=dict(self.headers),
            error_type=error_type,
            error_code=error_code,
        )


class _Events:
    """The read/feed/flush loop over a body, written once for every provider."""

    __slots__ = ("_decoder", "_done", "_prefix", "_response", "_seen", "_terminator")

    def __init__(self, response: HttpResponse, terminator: str | None) -> None:
        self._response = response
        self._terminator = terminator
        self._decoder = SSEDecoder(response._call.max_event_size)
        self._done = False
        self._seen = False
        self._prefix = b""  # the start of a body that has shown no event yet

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> list[ServerSentEvent]:
        decoder = self._decoder
        while not self._done:
            data = await self._response.read_chunk()
            if data:
                try:
                    events = decoder.feed(data)
                except EventTooLargeError as exc:
                    # A fresh error, and no reference to the bytes: the traceback of the
                    # original (and the failure lists that keep it) would hold them.
                    del data
                    raise EventTooLargeError(str(exc), limit=exc.limit) from None
                if events:
                    self._seen = True
                    return events
                if not self._seen and len(self._prefix) < _SNIPPET:
                    self._prefix += data[:_SNIPPET]
                continue
            self._done = True
            if not self._seen:
                raise self._not_events()
            if decoder.has_partial_line:
                raise self._interrupted("the stream was cut off in the middle of an event")
            events = decoder.flush()  # complete lines of an event lacking its blank line
            if events:
                return events
        if self._terminator is not None:
            raise self._interrupted(f"the stream ended before {self._terminator}")
        raise StopAsyncIteration

    def _interrupted(self, message: str) -> StreamInterruptedError:
        call = self._response._call
        return StreamInterruptedError(message, provider=call.provider, model=call.model)

    def _not_events(self) -> APIError:
        """A body that ended before its first event: cut short if it was starting one
        (or was empty), else not an event stream at all."""
        prefix = self._prefix.lstrip()
        if not prefix:
            return self._interrupted("the stream ended before any event")
        if prefix.startswith(_SSE_FIELDS):
            return self._interrupted(
                "the stream was cut off in the middle of an event"
                if self._decoder.has_partial_line
                else "the stream ended before any event"
            )
        return self._response.decode_error(self._prefix, expected="event stream")
