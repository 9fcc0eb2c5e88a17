"""The HTTP edge: the one aiohttp session per client, proxies, network waits bounded by
the attempt's deadline, and the one place aiohttp exceptions become asyncprov errors.

A provider sees a two-method seam: ``call.post(url, body=..., headers=...)`` gives a
response whose error statuses are already raised, and the response gives either
``events(...)`` (decoded server-sent events, with every "ended too early" check made
here) or ``parse(validate)`` (the whole body, validated, with truncation told apart
from a body that is not what was asked for).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import pydantic_core
from pydantic import ValidationError

from ._clock import clock
from ._errors import (
    APIConnectionError,
    APIError,
    AsyncProvError,
    ClientClosedError,
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    QueueTimeoutError,
    ResponseDecodeError,
    StreamInterruptedError,
    error_for_status,
    parse_retry_after,
)
from ._health import ProviderHealth
from ._http_errors import error_fields, is_truncated_json, proxy_auth_error, scrub, translate
from ._options import RETRY_AFTER_MAX
from ._proxies import ProxyConfig
from ._secrets import redact
from ._sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder
from ._timeouts import Deadline
from ._version import __version__

if TYPE_CHECKING:
    from ._options import CallOptions
    from ._ratelimit import Limiter, RateLimits
    from ._types import Attempt, ChatCompletion

__all__ = ["DEFAULT_CONNECTION_LIMIT", "HttpCall", "HttpClient", "HttpResponse"]

log = logging.getLogger("asyncprov")

USER_AGENT = f"asyncprov/{__version__}"
DEFAULT_CONNECTION_LIMIT = 10_000
"""The most connections a client keeps open at once, unless told otherwise."""

_T = TypeVar("_T")
_SNIPPET = 500
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:", b":")


class _Watchdog:
    """Closes a response whose deadline passes while it is being read.

    One timer per response, moved only when the deadline moves earlier (or when it fires
    early and finds the deadline moved later), so a network read costs a comparison
    rather than a new timer. Expiry closes the connection; the reader then raises the
    deadline's typed timeout error.
    """

    __slots__ = ("_at", "_deadline", "_handle", "_loop", "_raw", "expired")

    def __init__(self, raw: aiohttp.ClientResponse, deadline: Deadline) -> None:
        # asyncio's loop.time() is the monotonic clock Deadline uses.
        self._loop = asyncio.get_running_loop()
        self._raw = raw
        self._deadline = deadline
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self.expired = False
        deadline.listener = self.arm

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
            self.expired = True
            self._raw.close()
        else:
            self._at = at
            self._handle = self._loop.call_at(at, self._fire)

    def disarm(self) -> None:
        if self._deadline.listener == self.arm:
            self._deadline.listener = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class HttpResponse:
    """A successful (below 400) response whose every network wait is bounded by the
    attempt's deadline. Read it with ``events`` or ``parse``."""

    __slots__ = ("_call", "_raw", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, call: HttpCall) -> None:
        self._raw = raw
        self._call = call
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        content = self._raw.content
        call = self._call
        with call:  # the attempt's translation scope
            watchdog = call._watchdog
            if watchdog is None:  # one timer per response, from the first read
                watchdog = call._watchdog = _Watchdog(self._raw, call.deadline)
                watchdog.arm()
            data = content.read_nowait()  # already here: no wait, no re-arm needed
            if data or content.at_eof():
                return data
            watchdog.arm()
            data = await content.readany()
            if not data and watchdog.expired:  # closed under the read by the timer
                raise call.deadline.expired(provider=call.provider, model=call.model)
        return data

    def close(self) -> None:
        """Stop the timer (the connection itself is released by ``HttpCall.post``)."""
        watchdog = self._call._watchdog
        if watchdog is not None:
            watchdog.disarm()
            self._call._watchdog = None

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
        message, error_type, error_code = error_fields(payload, snippet=False)
        if message is not None:
            return ProviderError(
                message,
                provider=call.provider,
                model=call.model,
                error_type=error_type,
                error_code=error_code,
            )
        if exc is not None and is_truncated_json(exc):
            return APIConnectionError(
                "the response body was cut short", provider=call.provider, model=call.model
            )
        return ResponseDecodeError(
            f"the response is not the expected {expected} "
            f"(content type {self._raw.content_type or 'none'})",
            provider=call.provider,
            model=call.model,
            status=self.status,
            body=payload,
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
        if self.status == 407:
            return proxy_auth_error(call.provider, call.model)
        body = await self._read_prefix(64 * 1024)
        message, error_type, error_code = error_fields(body)
        cls = error_for_status(self.status)
        return cls(
            message or f"{self._raw.reason or 'error'}",
            status=self.status,
            provider=call.provider,
            model=call.model,
            body=body,
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
                events = decoder.feed(data)
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


class HttpCall:
    """What a provider gets for one attempt: the shared session, bound to this attempt's
    deadline, proxy and limits. The call-level instance (``HttpClient.call``) serves the
    first attempt of a lone provider, holds what the attempts share, and makes one per
    further attempt with ``attempt``.

    It is also the attempt's one translation point: ``with call:`` around sending and
    every read turns an expired timer into the deadline's timeout error, and aiohttp or
    socket failures into asyncprov errors (credentials scrubbed from the kept cause).
    """

    __slots__ = (
        "_children",
        "_client",
        "_raw",
        "_send_timer",
        "_watchdog",
        "attempts",
        "charges",
        "deadline",
        "health",
        "max_event_size",
        "model",
        "options",
        "provider",
        "proxy",
        "retry_after_max",
    )

    def __init__(
        self,
        client: HttpClient,
        *,
        options: CallOptions,
        deadline: Deadline,
        health: ProviderHealth,
        model: str | None = None,
        provider: str | None = None,
        proxy: ProxyConfig | None = None,
    ) -> None:
        self._client = client
        self._raw: aiohttp.ClientResponse | None = None
        self._children: list[HttpCall] | None = None
        self._send_timer: asyncio.Timeout | None = None
        self._watchdog: _Watchdog | None = None
        self.deadline = deadline
        self.health = health
        self.proxy = proxy
        self.provider = provider
        self.model = model
        self.options = options
        self.retry_after_max = RETRY_AFTER_MAX
        """The longest ``Retry-After`` waited out (the retry policy's, set by the
        engine making the attempts)."""
        self.max_event_size = client.max_event_size
        self.attempts: list[Attempt] = []
        """Attempts made so far for this call (shared with its attempts)."""
        self.charges: list[tuple[Limiter, int]] = []
        """Tokens charged to rate limiters by this call's requests (shared likewise)."""

    def attempt(self, *, provider: str, proxy: ProxyConfig | None) -> HttpCall:
        """The view for one attempt on ``provider``: a fresh deadline for its phases,
        sharing this call's total."""
        child = HttpCall(
            self._client,
            options=self.options,
            deadline=self.deadline.attempt(),
            health=self.health,
            model=self.model,
            provider=provider,
            proxy=proxy,
        )
        child.attempts = self.attempts
        child.charges = self.charges
        child.retry_after_max = self.retry_after_max
        if self._children is None:
            self._children = [child]
        else:
            self._children.append(child)
        return child

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if not isinstance(exc, Exception) or isinstance(exc, AsyncProvError):
            return False
        timer, watchdog = self._send_timer, self._watchdog
        if (timer is not None and timer.expired()) or (watchdog is not None and watchdog.expired):
            raise self.deadline.expired(provider=self.provider, model=self.model) from None
        translated = translate(exc, self.provider, self.model, proxy=self.proxy is not None)
        if translated is None:
            return False
        scrub(exc)
        raise translated from exc

    def settle(self, completion: ChatCompletion) -> None:
        """Correct the tokens charged for the request that answered by its usage."""
        usage = completion.usage
        if usage is None:
            return
        for limiter, charged in reversed(self.charges):
            if limiter.name == completion.provider or len(self.charges) == 1:
                limiter.settle(charged, usage.total_tokens)
                return

    def abort(self) -> None:
        """Close this call's connections now, from outside the task reading them (a reader
        blocked on them gets a connection error)."""
        if self._raw is not None:
            self._raw.close()
        for child in self._children or ():
            child.abort()

    def post(
        self,
        url: str,
        *,
        body: Any,
        headers: Mapping[str, str],
        stream: bool = True,
    ) -> _Post:
        """POST ``body`` as JSON: ``async with call.post(...) as response``. A status of
        400 or more is raised as its typed error. The response goes back to the pool
        when the block ends normally, and is closed (not pooled) on any early exit."""
        return _Post(self, url, body, headers, stream)

    async def _send(
        self, url: str, body: Any, headers: Mapping[str, str], stream: bool
    ) -> aiohttp.ClientResponse:
        client = self._client
        session = await client.session()
        proxy = self.proxy
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "POST %s provider=%s model=%s stream=%s",
                redact(url),
                self.provider,
                self.model,
                stream,
            )
        options = self.options
        if options.extra_body:
            body = {**body, **options.extra_body}
        try:
            payload = pydantic_core.to_json(body)
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidRequestError(f"a request value cannot be sent as JSON: {exc}") from None
        all_headers = {"Content-Type": "application/json", **headers}
        send: dict[str, Any] = {}
        if options.extra_query:
            send["params"] = options.extra_query
        if proxy is not None:
            send["proxy"] = proxy.url
            if proxy.headers:
                # aiohttp sends proxy_headers only on CONNECT (https targets); a plain-http
                # request through a proxy carries Proxy-Authorization among its own headers.
                if url.startswith("https:"):
                    send["proxy_headers"] = proxy.headers
                else:
                    all_headers.update(proxy.headers)
        connect = self.deadline.timeout.connect
        if connect != client.connect_timeout:
            send["timeout"] = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect
            )
        end = self.deadline.at()
        # asyncio's own timer: aiohttp is asyncio-only, and this runs once per request.
        timer = self._send_timer = asyncio.timeout_at(end if end != math.inf else None)
        with self:
            async with timer:
                return await session.post(url, data=payload, headers=all_headers, **send)


class _Post:
    """The ``async with`` of ``HttpCall.post`` (a plain class: it runs per request)."""

    __slots__ = (
        "_body",
        "_call",
        "_headers",
        "_limiter",
        "_raw",
        "_response",
        "_stream",
        "_url",
    )

    def __init__(
        self, call: HttpCall, url: str, body: Any, headers: Mapping[str, str], stream: bool
    ) -> None:
        self._call = call
        self._url = url
        self._body = body
        self._headers = headers
        self._stream = stream
        self._raw: aiohttp.ClientResponse | None = None
        self._response: HttpResponse | None = None
        self._limiter: Limiter | None = None

    async def __aenter__(self) -> HttpResponse:
        call = self._call
        limits = call._client.rate_limits
        if limits is not None and (limiter := limits.limiter(call.provider)) is not None:
            raw = self._raw = await self._send_limited(limiter)
        else:
            raw = self._raw = await call._send(self._url, self._body, self._headers, self._stream)
        call._raw = raw
        response = self._response = HttpResponse(raw, call)
        if raw.status >= 400:
            try:
                error = await response._status_error()
            finally:
                await self.__aexit__(APIError, None, None)
            raise error
        return response

    async def _send_limited(self, limiter: Limiter) -> aiohttp.ClientResponse:
        """Send within the provider's budgets; a 429 pauses the provider and is sent
        again (up to ``max_429_waits`` times) instead of failing the attempt."""
        import anyio

        call = self._call
        tokens = limiter.estimate(self._body) if limiter.counts_tokens else 0
        waits = 0
        while True:
            # Time queued here is not the call's: its timeouts start when it is sent.
            queued = clock()
            try:
                with anyio.move_on_after(limiter.limit.max_wait or math.inf) as waiting:
                    await limiter.acquire(tokens)
            finally:
                call.deadline.shift(clock() - queued)
            if waiting.cancelled_caught:
                raise QueueTimeoutError(
                    f"waited over {limiter.limit.max_wait} s for a turn under the rate "
                    f"limit of {call.provider}",
                    provider=call.provider,
                    model=call.model,
                    timeout=limiter.limit.max_wait,
                )
            sent = limiter.now()
            try:
                raw = await call._send(self._url, self._body, self._headers, self._stream)
            except BaseException:
                limiter.release()
                raise
            if raw.status != 429:
                limiter.answered()
                break
            if waits >= limiter.limit.max_429_waits or not limiter.rate_limited_for(
                parse_retry_after(raw.headers),
                sent_at=sent,
                retry_after_max=call.retry_after_max,
            ):
                break  # this 429 goes to the caller
            waits += 1
            raw.close()
            limiter.release()
            limiter.settle(tokens, 0)  # charged again when it is sent again
            log.info("%s: 429, pausing the provider and sending again", call.provider)
        if raw.status >= 400 and tokens:  # an error answer, 429 included, used no tokens
            limiter.settle(tokens, 0)
            tokens = 0
        self._limiter = limiter
        call.charges.append((limiter, tokens))
        return raw

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._limiter is not None:
            self._limiter.release()
            self._limiter = None
        raw, response = self._raw, self._response
        if raw is None or response is None:
            return
        self._raw = self._response = None
        if exc_type is None:
            raw.release()
        else:
            raw.close()
        response.close()
        self._call._raw = None


class HttpClient:
    """Owns one aiohttp ``ClientSession``, created lazily inside the running loop."""

    def __init__(
        self,
        *,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.connection_limit = connection_limit
        self.connect_timeout = connect_timeout
        """The session's connect timeout; calls with another one set it per request."""
        self.max_event_size = max_event_size
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.rate_limits: RateLimits | None = None
        """Per-provider limits, consulted before every request when set."""

    async def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use in the running loop."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.connection_limit, limit_per_host=0, ttl_dns_cache=300
                ),
                headers=self._headers,
                # `connect` also bounds waiting for a pool slot and a proxy's CONNECT reply.
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout
                ),
                trust_env=False,
            )
        elif loop is not self._loop:
            raise ConfigurationError(
                "this client's connections belong to another event loop; create one "
                "AsyncClient per event loop (or use the sync Client)"
            )
        return self._session

    def call(self, options: CallOptions, *, health: ProviderHealth, model: str) -> HttpCall:
        """A view of this client for one call (its deadline starts now)."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        return HttpCall(
            self, options=options, deadline=Deadline(options.timeout), health=health, model=model
        )

    async def aclose(self) -> None:
        """Close the session and every pooled connection."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
