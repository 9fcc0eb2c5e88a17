"""``AsyncClient``: the OpenAI-shaped facade over providers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, overload

from pydantic import ValidationError

from ._closing import AsyncCloseable
from ._errors import (
    ConfigurationError,
    ImagesNotSupportedError,
    InvalidRequestError,
    StreamNotSupportedError,
)
from ._failover import Opener, open_stream, retry_one
from ._health import ProviderHealth
from ._http import DEFAULT_CONNECTION_LIMIT, HttpCall, HttpClient
from ._images import DEFAULT_MAX_IMAGE_BYTES, ImageInput, load_image_urls
from ._options import CallOptions
from ._proxies import ProxyConfig, resolve_proxy
from ._registry import ProviderInput, provider_class, provider_for_model, resolve_provider
from ._retry import RetryPolicy
from ._sse import DEFAULT_MAX_EVENT_SIZE
from ._streaming import AsyncStream, complete
from ._timeouts import TimeoutInput, as_timeout
from ._types import (
    ChatCompletion,
    ChatRequest,
    ImagePart,
    ImageURL,
    MessageInput,
    TextPart,
)
from .providers.base import Provider, ProviderSettings

if TYPE_CHECKING:  # the batch and rate-limit modules load when first used
    from ._batch import AsyncBatch, BatchProgress, BatchRequest
    from ._ratelimit import RateLimit, RateLimits

__all__ = [
    "BATCH_CONCURRENCY",
    "CALL_SETTINGS",
    "DEFAULT_MAX_RETRIES",
    "AsyncClient",
    "MessagesInput",
    "build_request",
    "validation_message",
]

DEFAULT_MAX_RETRIES = 2
"""Retries after a lone provider's first attempt unless told otherwise (openai-python's)."""

BATCH_CONCURRENCY = 64
"""How many requests of a batch are in flight at once unless told otherwise."""

CALL_SETTINGS = frozenset(
    {
        "provider",
        "image",
        "images",
        "proxy",
        "api_key",
        "base_url",
        "timeout",
        "max_retries",
        "hedge_delay",
        "extra_headers",
        "extra_query",
        "extra_body",
    }
)
"""``create()`` keywords that configure the call itself (where it goes, with which key,
how long it waits) rather than being OpenAI body fields: a request body from elsewhere
(a gateway client, a batch file) must never set them."""

log = logging.getLogger("asyncprov")

_T = TypeVar("_T")

MessagesInput: TypeAlias = str | Sequence[MessageInput]
"""A conversation: a list of messages, or a plain string as one user message."""


def validation_message(exc: ValidationError, *, what: str = "request") -> str:
    """A short, readable summary of a pydantic error (no input values echoed)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"] if part != "function-after")
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    more = len(exc.errors()) - len(lines)
    suffix = f" (and {more} more)" if more > 0 else ""
    return f"invalid {what}: " + "; ".join(lines) + suffix


def build_request(
    *, model: str, messages: MessagesInput | None, stream: bool, **fields: Any
) -> ChatRequest:
    """Validate the caller's arguments into a ``ChatRequest``."""
    if messages is None:
        raise InvalidRequestError("messages is required: a string or a list of messages")
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    options = {k: v for k, v in fields.items() if v is not None}
    try:
        return ChatRequest.model_validate(
            {"model": model, "messages": messages, "stream": stream, **options}
        )
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc)) from None


def _retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_retries must be a whole number of 0 or more, not {value!r}")
    return value


def _hedge_delay(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"hedge_delay must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _checked_mapping(
    name: str, value: Mapping[str, Any] | None, *, headers: bool = False
) -> Mapping[str, Any] | None:
    """A per-call mapping, checked (header names and values: text on one line)."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping, not {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or (headers and not isinstance(item, str)):
            raise ConfigurationError(f"{name} keys{' and values' if headers else ''} must be text")
        if headers and any(c in key + item for c in "\r\n\0"):
            raise ConfigurationError(f"{name}[{key.strip()!r}] contains a line break")
    return dict(value)


def _attach_images(request: ChatRequest, urls: list[str]) -> None:
    """Add image parts to the last user message."""
    for index in range(len(request.messages) - 1, -1, -1):
        message = request.messages[index]
        if message.role == "user":
            break
    else:
        raise InvalidRequestError("images need a user message to attach to")
    content = message.content
    parts: list[Any] = [TextPart(text=content)] if isinstance(content, str) else list(content or [])
    parts.extend(ImagePart(image_url=ImageURL(url=url)) for url in urls)
    request.messages[index] = message.model_copy(update={"content": parts})


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
        provider: ProviderInput | None = None,
        stream: Literal[False] = False,
        image: ImageInput | None = None,
        images: Iterable[ImageInput] | None = None,
        proxy: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutInput = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream_options: dict[str, Any] | None = None,
        hedge_delay: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        provider: ProviderInput | None = None,
        stream: Literal[True],
        image: ImageInput | None = None,
        images: Iterable[ImageInput] | None = None,
        proxy: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutInput = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream_options: dict[str, Any] | None = None,
        hedge_delay: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> AsyncStream: ...

    @overload
    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        provider: ProviderInput | None = None,
        stream: bool,
        image: ImageInput | None = None,
        images: Iterable[ImageInput] | None = None,
        proxy: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutInput = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream_options: dict[str, Any] | None = None,
        hedge_delay: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> ChatCompletion | AsyncStream: ...

    async def create(
        self,
        model: str | None = None,
        messages: MessagesInput | None = None,
        *,
        provider: ProviderInput | None = None,
        stream: bool = False,
        image: ImageInput | None = None,
        images: Iterable[ImageInput] | None = None,
        proxy: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutInput = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        stream_options: dict[str, Any] | None = None,
        hedge_delay: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> ChatCompletion | AsyncStream:
        """Create a chat completion.

        Args:
            model: model name; routes to a provider when none is set (and may be
                omitted when the provider has a default model).
            messages: the conversation, or a plain string as one user message.
            provider: overrides the client's provider for this call.
            stream: return an ``AsyncStream`` of chunks instead of a ``ChatCompletion``.
            image: one image (bytes, path, open binary file, ``data:`` URI or http(s)
                URL) added to the last user message; ``images`` adds several.
            proxy: a proxy URL for this call only.
            api_key: a key for this call only.
            timeout: a ``Timeout``, or a number of seconds for the whole call.
            stream_options: ``{"include_usage": True}`` adds a last chunk with empty
                ``choices`` and the ``usage``, as in OpenAI's API.
            hedge_delay: with a ``RetryProvider``, hedge this call: start the next
                candidate when the current one has shown no content for this long.
            **extra: further body fields, sent to the provider as they are.

        Raises:
            InvalidRequestError: malformed messages, options or images (nothing sent).
            MissingAuthError: the provider needs a key and has none (nothing sent).
            APIError: any failure talking to the provider, typed by cause.

        Example:
            >>> stream = await client.chat.completions.create(
            ...     model="gpt-4o-mini", messages="Hello!", stream=True)
            >>> async for chunk in stream:
            ...     print(chunk.choices[0].delta.content or "", end="")
        """
        client = self._client
        chosen, options = client._resolve_call(
            provider,
            model,
            api_key=api_key,
            base_url=base_url,
            proxy=proxy,
            extra_headers=extra_headers,
            timeout=timeout,
            max_retries=max_retries,
            hedge_delay=hedge_delay,
            extra_query=extra_query,
            extra_body=extra_body,
        )
        request = build_request(
            model=model or chosen.resolve_model(None),
            messages=messages,
            stream=stream,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            stop=stop,
            seed=seed,
            tools=tools,
            tool_choice=tool_choice,
            response_format=response_format,
            include_usage=bool((stream_options or {}).get("include_usage")),
            extra=extra or None,
        )
        if image is not None or images is not None:
            urls = await load_image_urls(image, images, max_bytes=client.max_image_bytes)
            if urls:
                _attach_images(request, urls)
        if request.has_images() and not chosen.supports_images:
            raise ImagesNotSupportedError(f"{chosen.name} cannot take images")
        if stream and not chosen.supports_stream:
            raise StreamNotSupportedError(f"{chosen.name} cannot stream")
        http = client._http.call(options, health=client.health, model=request.model)
        if not stream:
            completion = await client._attempts(chosen, request, http, complete)
            completion.__dict__["attempts"] = tuple(http.attempts)  # excluded from dumps
            if http.charges:
                http.settle(completion)
            return completion
        result = await client._attempts(chosen, request, http, open_stream)
        result.attempts = tuple(http.attempts)
        return result

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
    ) -> None:
        self._api_key = api_key or None
        self.proxy: ProxyConfig | None = resolve_proxy(proxy, proxies)
        chosen: Provider | None = None
        if provider is not None:
            chosen = resolve_provider(provider)
            if base_url is not None:
                chosen = chosen.with_options(base_url=base_url)
        elif base_url is not None:
            chosen = provider_class("OpenAICompatible")(base_url=base_url)
        if chosen is not None:  # resolved once against the client's own settings
            chosen = chosen.resolved(
                ProviderSettings(client_api_key=self._api_key, client_proxy=self.proxy)
            )
        self._provider = chosen
        self.timeout = as_timeout(timeout)
        self.max_retries = _retries(max_retries)
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

            self._http.rate_limits = (
                rate_limits if isinstance(rate_limits, RateLimits) else RateLimits(rate_limits)
            )
        self._warned_not_working: set[str] = set()
        self.health = ProviderHealth()
        """Recent failures per provider, used by failover to cool providers down."""
        self.chat = AsyncChat(self)

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
        self,
        provider: ProviderInput | None,
        model: str | None,
        *,
        api_key: str | None,
        base_url: str | None,
        proxy: str | None,
        extra_headers: Mapping[str, str] | None,
        timeout: TimeoutInput,
        max_retries: int | None,
        hedge_delay: float | None,
        extra_query: Mapping[str, str] | None,
        extra_body: Mapping[str, Any] | None,
    ) -> tuple[Provider, CallOptions]:
        """Every per-call setting merged once with the provider instance, the client
        and the environment (``ProviderSettings`` holds the precedence): the provider
        as this call uses it, and the call's options."""
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
                    headers=_checked_mapping("extra_headers", extra_headers, headers=True),
                    client_api_key=self._api_key,
                    client_proxy=self.proxy,
                )
            )
        if not chosen.working and chosen.name not in self._warned_not_working:
            self._warned_not_working.add(chosen.name)
            log.warning("%s is marked not working; trying it because it was asked for", chosen.name)
        options = self._options
        if (
            timeout is not None
            or max_retries is not None
            or hedge_delay is not None
            or extra_query
            or extra_body
        ):
            options = CallOptions(
                timeout=as_timeout(timeout, self.timeout),
                max_retries=self.max_retries if max_retries is None else _retries(max_retries),
                hedge_delay=_hedge_delay(hedge_delay),
                extra_query=_checked_mapping("extra_query", extra_query),
                extra_body=_checked_mapping("extra_body", extra_body),
            )
        return chosen, options

    async def _attempts(
        self, provider: Provider, request: ChatRequest, http: HttpCall, opener: Opener[_T]
    ) -> _T:
        """One call's attempts: a failover group runs its own; a lone provider is
        retried up to the call's ``max_retries``."""
        if provider.is_group:
            return await opener(provider, request, http)
        retries = http.options.max_retries
        policy = self._policies.get(retries)
        if policy is None:
            policy = self._policies[retries] = RetryPolicy(max_retries=retries)
        return await retry_one(provider, request, http, opener, policy)

    async def aclose(self) -> None:
        """Close every connection; the client cannot be used afterwards."""
        await self._http.aclose()
