"""``AsyncClient``: the OpenAI-shaped facade over providers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Unpack, overload

from pydantic import BaseModel

from ._closing import AsyncCloseable
from ._errors import ConfigurationError, ImagesNotSupportedError, StreamNotSupportedError
from ._failover import Opener, open_stream, retry_one
from ._health import ProviderHealth
from ._http import DEFAULT_CONNECTION_LIMIT, HttpCall, HttpClient
from ._images import DEFAULT_MAX_IMAGE_BYTES, load_image_urls
from ._options import (
    BATCH_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    CallOptions,
    checked_hedge_delay,
    checked_mapping,
    checked_retries,
)
from ._proxies import ProxyConfig, resolve_proxy
from ._registry import ProviderInput, provider_class, provider_for_model, resolve_provider
from ._request import (
    CallSettings,
    CreateOptions,
    MessagesInput,
    ParseOptions,
    attach_images,
    build_request,
    take_settings,
)
from ._retry import RetryPolicy
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._streaming import AsyncStream, complete
from ._structured import json_schema_format, parse_reply
from ._telemetry import Telemetry
from ._timeouts import TimeoutInput, as_timeout
from ._types import ChatCompletion, ChatRequest
from .providers.base import Provider, ProviderSettings

if TYPE_CHECKING:  # the batch and rate-limit modules load when first used
    from ._batch import AsyncBatch, BatchProgress, BatchRequest
    from ._ratelimit import RateLimit, RateLimits
    from ._shared import SharedStateInput

__all__ = ["AsyncClient"]

log = logging.getLogger("asyncprov")

_T = TypeVar("_T")


class AsyncCompletions:
    """``client.chat.completions``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    @overload
    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: Literal[False] = False,
        **options: Unpack[CreateOptions],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: Literal[True],
        **options: Unpack[CreateOptions],
    ) -> AsyncStream: ...

    @overload
    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: bool,
        **options: Unpack[CreateOptions],
    ) -> ChatCompletion | AsyncStream: ...

    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        stream: bool = False,
        **options: Any,
    ) -> ChatCompletion | AsyncStream:
        """Create a chat completion.

        Args:
            model: model name; routes to a provider when none is set (and may be
                omitted when the provider has a default model).
            messages: the conversation, or a plain string as one user message.
            stream: return an ``AsyncStream`` of chunks instead of a ``ChatCompletion``.
            **options: the call's settings (``CallSettings``: ``provider``, ``image``,
                ``images``, ``proxy``, ``api_key``, ``base_url``, ``timeout``,
                ``max_retries``, ``hedge_delay``, ``extra_headers``, ``extra_query``,
                ``extra_body``) and body fields (``temperature``, ``max_tokens``,
                ``tools``, ...; others are sent as they are). See ``CreateOptions``.

        Raises:
            InvalidRequestError: malformed messages, options or images (nothing sent).
            MissingAuthError: the provider needs a key and has none (nothing sent).
            APIError: any failure talking to the provider, typed by cause; when every
                attempt failed alike, that kind (``.exceptions`` lists the attempts).
            RetryProviderError: the attempts failed in different ways (an
                ``ExceptionGroup``).

        Example:
            >>> stream = await client.chat.completions.create(
            ...     model="gpt-4o-mini", messages="Hello!", stream=True)
            >>> async for chunk in stream:
            ...     print(chunk.choices[0].delta.content or "", end="")
        """
        client = self._client
        settings = take_settings(options)
        chosen, call = client._resolve_call(model, settings)
        request = build_request(
            model=model or chosen.resolve_model(None), messages=messages, stream=stream, **options
        )
        image, images = settings.get("image"), settings.get("images")
        if image is not None or images is not None:
            urls = await load_image_urls(image, images, max_bytes=client.max_image_bytes)
            if urls:
                attach_images(request, urls)
        if request.has_images() and not chosen.supports_images:
            raise ImagesNotSupportedError(f"{chosen.name} cannot take images")
        if stream and not chosen.supports_stream:
            raise StreamNotSupportedError(f"{chosen.name} cannot stream")
        http = client._http.call(call, health=client.health, model=request.model)
        observer = client.telemetry.observer(chosen, request)  # None unless it records
        if observer is not None:
            return await observer.run(client._answer(chosen, request, http), http.attempts)
        return await client._answer(chosen, request, http)

    async def parse(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        response_format: type[BaseModel],
        **options: Unpack[ParseOptions],
    ) -> ChatCompletion:
        """A whole completion whose reply is validated into ``response_format`` (a
        pydantic model): ``choices[0].message.parsed`` is the instance, or ``None`` with
        ``message.refusal`` set when the provider refused. Each provider is asked its
        native way (OpenAI's strict ``json_schema``, Gemini's response schema,
        Anthropic's forced tool).

        Raises:
            StructuredOutputError: the reply does not validate (``.raw`` holds it).

        Example:
            >>> class City(BaseModel):
            ...     name: str
            ...     country: str
            >>> reply = await client.chat.completions.parse(
            ...     model="gpt-4o-mini", messages="The capital of France?", response_format=City)
            >>> reply.choices[0].message.parsed
            City(name='Paris', country='France')
        """
        completion = await self.create(
            model, messages, stream=False, response_format=json_schema_format(response_format),
            **options,
        )  # fmt: skip
        return parse_reply(completion, response_format)

    def batch(
        self,
        requests: Iterable[BatchRequest] | AsyncIterable[BatchRequest],
        *,
        concurrency: int = BATCH_CONCURRENCY,
        ordered: bool = False,
        progress: Callable[[BatchProgress], object] | None = None,
        **defaults: Any,
    ) -> AsyncBatch:
        """Run many non-streamed requests, at most ``concurrency`` at a time.

        Use the result in ``async with`` and iterate it: one ``BatchResult`` per
        request, carrying the completion or the typed error (a failure never stops
        the batch). The input is read only as requests can start, so it may be a
        generator over millions of lines. Rate limits set on the client
        (``rate_limits``) apply to every request.

        Args:
            requests: dicts of ``create()`` arguments (``model``, ``messages``, ...),
                each with an optional ``custom_id``; an iterable or async iterable.
            concurrency: the most requests in flight at once.
            ordered: yield results in input order instead of as they finish (intake
                pauses while requests in flight plus finished results waiting for a
                slow one reach twice ``concurrency``).
            progress: called with a ``BatchProgress`` after every result.
            **defaults: ``create()`` arguments for every request (a request's own
                values win), e.g. ``model="gpt-4o-mini"`` or ``timeout=60``.

        Example:
            >>> requests = ({"custom_id": str(i), "messages": f"Say {i}"} for i in range(1000))
            >>> async with client.chat.completions.batch(
            ...         requests, model="gpt-4o-mini", concurrency=64) as results:
            ...     async for result in results:
            ...         print(result.custom_id, result.completion or result.error_type)
        """
        from ._batch import AsyncBatch

        return AsyncBatch(
            self,
            requests,
            concurrency=concurrency,
            ordered=ordered,
            progress=progress,
            defaults=defaults,
        )


class AsyncChat:
    """``client.chat``."""

    def __init__(self, client: AsyncClient) -> None:
        self.completions = AsyncCompletions(client)


class AsyncClient(AsyncCloseable):
    """An async client over one or many LLM providers, shaped like ``openai.AsyncOpenAI``.

    Args:
        provider: a provider class, instance or name; when ``None`` each call routes
            by its model name (or to ``base_url`` when that is given).
        api_key: key for the provider (else its environment variable).
        base_url: an OpenAI-compatible server to talk to (when ``provider`` is None),
            or a new API root for ``provider``.
        proxies: ``{"https": url, "http": url}``; ``proxy``: one proxy URL. Credentials
            in the URL are used and never shown. Falls back to ``ASYNCPROV_PROXY``.
        timeout: a ``Timeout`` or a number of seconds for each whole call.
        max_retries: retries after the first attempt of a call to a lone provider
            (default 2, as in openai-python); a ``RetryProvider`` uses its own.
        headers: extra HTTP headers sent with every request.
        max_event_size: the largest single streamed event accepted, in bytes.
        max_image_bytes: the largest image accepted, in bytes.
        connection_limit: the most connections open at once.
        rate_limits: ``{provider name: RateLimit(rpm=..., tpm=..., concurrency=...)}``
            shared by every call of this client (``"*"``: each provider without its
            own); see ``rate_limits``.
        shared_state: a ``SharedState`` or a ``redis://`` URL: the rate limits and the
            provider health are then shared with every client on that Redis (other
            processes and machines included). Needs ``asyncprov[redis]``.
        telemetry: where OpenTelemetry spans and metrics go (default: the global
            providers, once configured; see ``Telemetry``).

    Example:
        >>> async with AsyncClient(base_url="http://127.0.0.1:8000/v1") as client:
        ...     reply = await client.chat.completions.create(model="m", messages="Hi")
        ...     print(reply.choices[0].message.content)
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
        self._api_key = api_key or None
        self.proxy: ProxyConfig | None = resolve_proxy(proxy, proxies)
        chosen: Provider | None = None
        if provider is not None:
            chosen = resolve_provider(provider)
        elif base_url is not None:
            chosen = provider_class("OpenAICompatible")(base_url=base_url)
        if chosen is not None:  # resolved once against the client's own settings
            chosen = chosen.resolved(
                ProviderSettings(
                    base_url=base_url,  # a new API root for the provider (every member)
                    client_api_key=self._api_key,
                    client_proxy=self.proxy,
                )
            )
        self._provider = chosen
        self.timeout = as_timeout(timeout)
        self.max_retries = checked_retries(max_retries)
        """Retries after the first attempt on a lone provider (``create`` may override)."""
        self._options = CallOptions(timeout=self.timeout, max_retries=self.max_retries)
        self._policies: dict[int, RetryPolicy] = {}
        self.max_image_bytes = max_image_bytes
        self._http = HttpClient(
            connection_limit=connection_limit,
            max_event_size=max_event_size,
            headers=headers,
            connect_timeout=self.timeout.connect,
        )
        if rate_limits is not None:
            from ._ratelimit import RateLimits

            limits = rate_limits if isinstance(rate_limits, RateLimits) else RateLimits(rate_limits)
            self._http.rate_limits = limits
        self._warned_not_working: set[str] = set()
        self.health = ProviderHealth()
        """Recent failures per provider, used by failover to cool providers down."""
        if shared_state is not None:
            from ._shared_limits import share

            self.health = share(self._http, shared_state)
        self.telemetry = telemetry or Telemetry()
        """Where this client's OpenTelemetry spans and metrics go (``Telemetry``)."""
        self.chat = AsyncChat(self)

    @property
    def api_key(self) -> str | None:
        """The key given to this client (``api_key=``), if any: the one every provider
        without its own uses. Never shown in a repr."""
        return self._api_key

    @property
    def provider(self) -> Provider | None:
        """The client's provider, if it has one."""
        return self._provider

    @property
    def rate_limits(self) -> RateLimits:
        """The per-provider rate limits, a mutable mapping of provider name to
        ``RateLimit``; ``rate_limits.stats(name)`` tells how often each paced or waited."""
        if self._http.rate_limits is None:
            from ._ratelimit import RateLimits

            self._http.rate_limits = RateLimits()
        return self._http.rate_limits

    def __repr__(self) -> str:
        return f"AsyncClient(provider={self._provider!r}, proxy={self.proxy!r})"

    def _resolve_call(
        self, model: str | None, settings: CallSettings
    ) -> tuple[Provider, CallOptions]:
        """Every per-call setting merged once with the provider instance, the client
        and the environment (``ProviderSettings`` holds the precedence): the provider
        as this call uses it, and the call's options."""
        provider = settings.get("provider")
        api_key = settings.get("api_key")
        base_url = settings.get("base_url")
        proxy = settings.get("proxy")
        extra_headers = settings.get("extra_headers")
        if provider is not None:
            chosen = resolve_provider(provider)
        elif self._provider is not None:
            chosen = self._provider  # already resolved against the client's settings
        elif model:
            chosen = provider_for_model(model)
        else:
            raise ConfigurationError("pass model=... or give the client a provider")
        if (
            chosen is not self._provider
            or api_key
            or base_url is not None
            or proxy
            or extra_headers
        ):
            chosen = chosen.resolved(
                ProviderSettings(
                    api_key=api_key or None,
                    base_url=base_url,
                    proxy=resolve_proxy(proxy, env={}) if proxy else None,
                    headers=checked_mapping("extra_headers", extra_headers, headers=True),
                    client_api_key=self._api_key,
                    client_proxy=self.proxy,
                )
            )
        if not chosen.working and chosen.name not in self._warned_not_working:
            self._warned_not_working.add(chosen.name)
            log.warning("%s is marked not working; trying it because it was asked for", chosen.name)
        options = self._options
        timeout = settings.get("timeout")
        max_retries = settings.get("max_retries")
        hedge_delay = settings.get("hedge_delay")
        extra_query = settings.get("extra_query")
        extra_body = settings.get("extra_body")
        if (
            timeout is not None
            or max_retries is not None
            or hedge_delay is not None
            or extra_query
            or extra_body
        ):
            options = CallOptions(
                timeout=as_timeout(timeout, self.timeout),
                max_retries=self.max_retries
                if max_retries is None
                else checked_retries(max_retries),
                hedge_delay=checked_hedge_delay(hedge_delay),
                extra_query=checked_mapping("extra_query", extra_query),
                extra_body=checked_mapping("extra_body", extra_body),
            )
        return chosen, options

    async def _answer(
        self, provider: Provider, request: ChatRequest, http: HttpCall
    ) -> ChatCompletion | AsyncStream:
        """The call's attempts, and their records on the answer."""
        if not request.stream:
            completion = await self._attempts(provider, request, http, complete)
            completion.__dict__["attempts"] = tuple(http.attempts)  # excluded from dumps
            if http.charges:
                http.settle(completion)
            return completion
        result = await self._attempts(provider, request, http, open_stream)
        result.attempts = tuple(http.attempts)
        return result

    def _attempts(
        self, provider: Provider, request: ChatRequest, http: HttpCall, opener: Opener[_T]
    ) -> Awaitable[_T]:
        """One call's attempts: a failover group runs its own; a lone provider is
        retried up to the call's ``max_retries``. (The engine's coroutine, handed back:
        no frame of its own.)"""
        if provider.is_group:
            return opener(provider, request, http)
        retries = http.options.max_retries
        policy = self._policies.get(retries)
        if policy is None:
            policy = self._policies[retries] = RetryPolicy(max_retries=retries)
        return retry_one(provider, request, http, opener, policy)

    async def aclose(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        await self._http.aclose()
        if self._http.shared is not None:
            await self._http.shared.aclose()
