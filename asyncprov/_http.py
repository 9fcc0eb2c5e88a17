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
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import pydantic_core

from ._errors import (
    APIError,
    AsyncProvError,
    ClientClosedError,
    ConfigurationError,
    InvalidRequestError,
)
from ._health import ProviderHealth
from ._http_errors import SECRET_HEADERS, scrub, translate
from ._options import RETRY_AFTER_MAX
from ._proxies import ProxyConfig
from ._response import HttpResponse, Watchdog  # the response side of the seam
from ._secrets import KeyMask, redact
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._timeouts import Deadline
from ._version import __version__

if TYPE_CHECKING:
    from ._options import CallOptions
    from ._ratelimit import AnyLimiter, RateLimits
    from ._shared_store import SharedStore
    from ._types import Attempt, ChatCompletion

__all__ = ["DEFAULT_CONNECTION_LIMIT", "HttpCall", "HttpClient"]

log = logging.getLogger("asyncprov")

USER_AGENT = f"asyncprov/{__version__}"
DEFAULT_CONNECTION_LIMIT = 10_000
"""The most connections a client keeps open at once, unless told otherwise."""


class HttpCall:
    """What a provider gets for one attempt: the shared session, bound to this attempt's
    deadline, proxy and limits. The call-level instance (``HttpClient.call``) serves the
    first attempt of a lone provider, holds what the attempts share, and makes one per
    further attempt with ``attempt``.

    It is also the attempt's one translation point: ``fail(exc)``, for whatever sending
    or a read raised, turns an expired timer into the deadline's timeout error, and
    aiohttp or socket failures into asyncprov errors (credentials scrubbed from the
    kept cause).
    """

    __slots__ = (
        "_children",
        "_client",
        "_raw",
        "_sent_headers",
        "_watchdog",
        "attempts",
        "charges",
        "deadline",
        "health",
        "max_event_size",
        "model",
        "options",
        "owns_total",
        "provider",
        "proxy",
        "retry_after_max",
        "waits_429",
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
        self._sent_headers: Mapping[str, str] | None = None
        self._watchdog: Watchdog | None = None
        self.deadline = deadline
        self.health = health
        self.proxy = proxy
        self.provider = provider
        self.model = model
        self.options = options
        self.owns_total = True
        """Whether time this attempt queues in a rate limiter extends the call's total
        (not when a sibling attempt of the call was running meanwhile)."""
        self.retry_after_max = RETRY_AFTER_MAX
        """The longest ``Retry-After`` waited out (the retry policy's, set by the
        engine making the attempts)."""
        self.max_event_size = client.max_event_size
        self.attempts: list[Attempt] = []
        """Attempts made so far for this call (shared with its attempts)."""
        self.charges: list[tuple[AnyLimiter, int]] = []
        """Tokens charged to rate limiters by this call's requests (shared likewise)."""
        self.waits_429 = [0]
        """429s a rate limiter waited out for this call (shared likewise)."""

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
        child.waits_429 = self.waits_429
        child.retry_after_max = self.retry_after_max
        if self._children is None:
            self._children = [child]
        else:
            self._children.append(child)
        return child

    def key_mask(self) -> KeyMask:
        """A mask for the secrets this attempt sent (its key headers), for the text of
        an error answer, which an upstream may echo them in."""
        values: list[str] = []
        for name, value in (self._sent_headers or {}).items():
            if name.lower() in SECRET_HEADERS:
                values.append(value.partition(" ")[2] or value)  # without "Bearer "
        return KeyMask(values)

    def fail(self, exc: Exception) -> NoReturn:
        """Raise what ``exc``, raised sending this attempt or reading its response,
        means (a plain ``try``/``except`` at the caller: free unless something fails)."""
        if isinstance(exc, AsyncProvError):
            raise exc
        watchdog = self._watchdog
        if watchdog is not None and watchdog.expired:
            raise self.deadline.expired(provider=self.provider, model=self.model) from None
        translated = translate(exc, self.provider, self.model, proxy=self.proxy is not None)
        if translated is None:
            raise exc
        scrub(exc)
        raise translated from exc

    def discard(self, raw: aiohttp.ClientResponse) -> None:
        """Close a response that will not be read (a 429 sent again) and stop the
        attempt's timer, which would otherwise still cancel this task."""
        raw.close()
        if self._watchdog is not None:
            self._watchdog.disarm()

    def settle(self, completion: ChatCompletion) -> None:
        """Correct the tokens charged for the request that answered by its usage."""
        if completion.usage is not None:
            self.settle_usage(completion.provider, completion.usage.total_tokens, only=False)

    def settle_usage(self, provider: str | None, used: int, *, only: bool = True) -> None:
        """Settle ``provider``'s charge (``only=False``: a lone one) by its usage, once."""
        charges = self.charges
        for index in range(len(charges) - 1, -1, -1):
            limiter, charged = charges[index]
            if limiter.name == provider or (not only and len(charges) == 1):
                del charges[index]
                limiter.settle(charged, used)
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
        loop = asyncio.get_running_loop()
        session = client._session
        if session is None or client._loop is not loop:
            session = await client.session()  # made on first use; the errors if unusable
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
        self._sent_headers = headers
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
        # The attempt's one timer (it goes on to bound the reads): expiry before the
        # response cancels this task, which is told apart from any other cancellation
        # as asyncio.timeout does.
        watchdog = self._watchdog
        if watchdog is None:
            watchdog = self._watchdog = Watchdog(self.deadline, loop)
        task = asyncio.current_task(loop)
        cancelling = task.cancelling() if task is not None else 0
        watchdog.begin(task)
        try:
            return await session.post(url, data=payload, headers=all_headers, **send)
        except asyncio.CancelledError:
            watchdog.disarm()
            if watchdog.expired and task is not None and task.uncancel() <= cancelling:
                raise self.deadline.expired(provider=self.provider, model=self.model) from None
            raise
        except Exception as exc:
            watchdog.disarm()
            self.fail(exc)
        except BaseException:
            watchdog.disarm()
            raise


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
        self._limiter: AnyLimiter | None = None

    async def __aenter__(self) -> HttpResponse:
        call = self._call
        client = call._client
        limits = client.rate_limits
        if limits is not None and (limiter := limits.limiter(call.provider, client.shared)):
            from ._limited_send import send_limited

            raw = self._raw = await send_limited(
                call, limiter, self._url, self._body, self._headers, self._stream
            )
            self._limiter = limiter
        else:
            raw = self._raw = await call._send(self._url, self._body, self._headers, self._stream)
        call._raw = raw
        watchdog = call._watchdog
        assert watchdog is not None  # made by _send
        response = self._response = HttpResponse(raw, call, watchdog)
        if raw.status >= 400:
            limited = self._limiter is not None
            try:
                error = await response._status_error()
            finally:
                await self.__aexit__(APIError, None, None)
            if limited and raw.status == 429:
                error.retries_spent = True  # the limiter waited out what it could
            raise error
        return response

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
        self.shared: SharedStore | None = None  # limits kept in Redis (``SharedState``)

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
