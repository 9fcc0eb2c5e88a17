"""The HTTP edge: the one aiohttp session per client, proxies, network waits bounded by
the caller's deadline, and the one place aiohttp exceptions become asyncprov errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import pydantic_core

from ._errors import (
    APIConnectionError,
    APIError,
    ClientClosedError,
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    ProxyError,
    QueueTimeoutError,
    ResponseDecodeError,
    error_for_status,
    parse_retry_after,
)
from ._health import ProviderHealth
from ._http_errors import error_fields, scrub, translate
from ._proxies import ProxyConfig, redact
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._timeouts import Deadline, clock
from ._version import __version__

if TYPE_CHECKING:
    from ._ratelimit import Limiter, RateLimits
    from ._types import Attempt, ChatCompletion
    from .providers.base import Provider

__all__ = ["HttpCall", "HttpClient", "HttpResponse"]

log = logging.getLogger("asyncprov")

USER_AGENT = f"asyncprov/{__version__}"
DEFAULT_CONNECTION_LIMIT = 10_000


class _Watchdog:
    """Closes a response whose deadline passes while it is being read.

    One timer per response, moved only when the deadline moves earlier (or when it fires
    early and finds the deadline moved later), so a network read costs a comparison
    rather than a cancel scope. Expiry closes the connection; the reader then raises the
    deadline's typed timeout error.
    """

    __slots__ = ("_at", "_deadline", "_handle", "_loop", "_raw", "_streaming", "expired")

    def __init__(self, raw: aiohttp.ClientResponse, deadline: Deadline, streaming: bool) -> None:
        # asyncio's loop.time() is the monotonic clock Deadline uses.
        self._loop = asyncio.get_running_loop()
        self._raw = raw
        self._deadline = deadline
        self._streaming = streaming
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf
        self.expired = False
        deadline.listener = self.arm

    def arm(self) -> None:
        at = self._deadline.at(streaming=self._streaming)
        if at < self._at:
            if self._handle is not None:
                self._handle.cancel()
            self._at = at
            self._handle = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        at = self._deadline.at(streaming=self._streaming)
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
    """A response whose every network wait is bounded by the attempt's deadline."""

    __slots__ = ("__dict__", "_call", "_raw", "_watchdog", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, call: HttpCall) -> None:
        self._raw = raw
        self._call = call
        self._watchdog: _Watchdog | None = None  # made when a read first has to wait
        self.status = raw.status
        self.headers: Mapping[str, str] = raw.headers

    @functools.cached_property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters."""
        return self._raw.content_type.lower()

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrives; ``b""`` at its end."""
        content = self._raw.content
        watchdog = self._watchdog
        try:
            if watchdog is None:  # one timer per response, from the first read: total holds
                call = self._call
                watchdog = self._watchdog = _Watchdog(self._raw, call.deadline, call.streaming)
                watchdog.arm()
            data = content.read_nowait()  # already here: no wait, no re-arm needed
            if data or content.at_eof():
                return data
            watchdog.arm()
            data = await content.readany()
        except Exception as error:
            call = self._call
            if watchdog is not None and watchdog.expired:
                raise call.deadline.expired(provider=call.provider, model=call.model) from None
            translated = translate(error, call.provider, call.model, proxy=call.proxy is not None)
            if translated is None:
                raise
            scrub(error)
            raise translated from error
        if not data and watchdog.expired:
            call = self._call
            raise call.deadline.expired(provider=call.provider, model=call.model)
        return data

    def close(self) -> None:
        """Stop the timer (the connection itself is released by ``HttpCall.post``)."""
        if self._watchdog is not None:
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

    async def status_error(self) -> APIError:
        """The typed error for a non-2xx response, with the provider's message if any."""
        call = self._call
        if self.status == 407:
            return ProxyError(
                "the proxy refused the credentials (HTTP 407)",
                provider=call.provider,
                model=call.model,
            )
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

    async def format_error(self, expected: str) -> APIError:
        """The error for a 2xx body that is not ``expected``: a ``ProviderError`` when it
        is an error object, else a ``ResponseDecodeError`` with a snippet."""
        call = self._call
        body = await self.read()
        if self.content_type == "application/json":
            message, error_type, error_code = error_fields(body)
            if message is not None:
                return ProviderError(
                    message,
                    provider=call.provider,
                    model=call.model,
                    error_type=error_type,
                    error_code=error_code,
                )
        return ResponseDecodeError(
            f"expected {expected}, got {self.content_type or 'no content type'}",
            provider=call.provider,
            model=call.model,
            status=self.status,
            body=body,
        )


class HttpCall:
    """What a provider gets for one attempt: the shared session, bound to this attempt's
    deadline, proxy and limits."""

    __slots__ = (
        "_children",
        "_client",
        "_raw",
        "attempts",
        "charges",
        "deadline",
        "health",
        "max_event_size",
        "model",
        "provider",
        "proxy",
        "streaming",
    )

    def __init__(
        self,
        client: HttpClient,
        *,
        deadline: Deadline,
        proxy: ProxyConfig | None,
        health: ProviderHealth,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        self._client = client
        self._raw: aiohttp.ClientResponse | None = None
        self._children: list[HttpCall] = []
        self.deadline = deadline
        self.health = health
        self.proxy = proxy
        self.provider = provider
        self.model = model
        self.max_event_size = client.max_event_size
        self.streaming = True
        self.attempts: list[Attempt] = []
        """Failover attempts made so far for this call (shared with its siblings)."""
        self.charges: list[tuple[Limiter, int]] = []
        """Tokens charged to rate limiters by this call's requests (shared likewise)."""

    def attempt(self, *, provider: Provider) -> HttpCall:
        """A sibling call for one failover attempt: a fresh deadline for its phases,
        sharing this call's total; the provider's own proxy wins over the call's."""
        child = HttpCall(
            self._client,
            deadline=Deadline(
                self.deadline.timeout, total_at=self.deadline.total_at, parent=self.deadline
            ),
            proxy=provider.proxy or self.proxy,
            health=self.health,
            provider=provider.name,
            model=self.model,
        )
        child.attempts = self.attempts
        child.charges = self.charges
        self._children.append(child)
        return child

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
        for child in self._children:
            child.abort()

    def post(
        self,
        url: str,
        *,
        body: Any,
        headers: Mapping[str, str],
        stream: bool = True,
    ) -> _Post:
        """POST ``body`` as JSON: ``async with call.post(...) as response``. The response
        goes back to the pool when the block ends normally, and is closed (not pooled)
        on any early exit."""
        return _Post(self, url, body, headers, stream)

    async def _send(
        self, url: str, body: Any, headers: Mapping[str, str], stream: bool
    ) -> aiohttp.ClientResponse:
        self.streaming = stream
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
        try:
            payload = pydantic_core.to_json(body)
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidRequestError(f"a request value cannot be sent as JSON: {exc}") from None
        all_headers = {"Content-Type": "application/json", **headers}
        options: dict[str, Any] = {}
        if proxy is not None:
            options["proxy"] = proxy.url
            if proxy.headers:
                # aiohttp sends proxy_headers only on CONNECT (https targets); a plain-http
                # request through a proxy carries Proxy-Authorization among its own headers.
                if url.startswith("https:"):
                    options["proxy_headers"] = proxy.headers
                else:
                    all_headers.update(proxy.headers)
        connect = self.deadline.timeout.connect
        if connect != client.connect_timeout:
            options["timeout"] = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect
            )
        end = self.deadline.at(streaming=stream)
        # asyncio's own timeout: aiohttp is asyncio-only, and this runs once per request.
        timer = asyncio.timeout_at(end if end != math.inf else None)
        try:
            async with timer:
                raw = await session.post(url, data=payload, headers=all_headers, **options)
        except Exception as error:
            if isinstance(error, TimeoutError) and timer.expired():
                raise self.deadline.expired(provider=self.provider, model=self.model) from None
            translated = translate(error, self.provider, self.model, proxy=proxy is not None)
            if translated is None:
                raise
            scrub(error)
            raise translated from error
        return raw


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
            call.deadline.suspend()
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
                parse_retry_after(raw.headers), sent_at=sent
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

    def call(
        self,
        *,
        deadline: Deadline,
        proxy: ProxyConfig | None,
        health: ProviderHealth,
        provider: str | None = None,
        model: str | None = None,
    ) -> HttpCall:
        """A view of this client for one call."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        return HttpCall(
            self, deadline=deadline, proxy=proxy, health=health, provider=provider, model=model
        )

    async def aclose(self) -> None:
        """Close the session and every pooled connection."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
