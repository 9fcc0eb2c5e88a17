"""The Provider contract: class-level facts, one async-generator core, and shims.

A provider turns a normalized ``ChatRequest`` into ``ChatCompletionChunk``s over the
HTTP edge it is handed. It opens no task groups and sets no timeouts: the caller side
bounds every network wait through the ``HttpCall`` it passes in.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Self, TypeVar
from urllib.parse import urlsplit

import pydantic_core

from .._accumulate import CompletionAccumulator
from .._errors import ConfigurationError, MissingAuthError, ModelNotFoundError
from .._http import HttpCall
from .._proxies import ProxyConfig, resolve_proxy
from .._secrets import redact
from .._types import ChatCompletion, ChatCompletionChunk, ChatRequest, MessageInput

__all__ = [
    "Provider",
    "ProviderSettings",
    "chunk_from",
    "json_event",
    "validate_chunk_json",
]

_P = ParamSpec("_P")

# Built once when the first provider module loads; calling pydantic-core's validators
# directly skips pydantic's per-call wrapper on the hottest line of every stream.
ChatCompletionChunk.model_rebuild()
validate_chunk_json: Callable[[bytes], ChatCompletionChunk] = (
    ChatCompletionChunk.__pydantic_validator__.validate_json
)
"""A chunk from its JSON (what every OpenAI-shaped stream sends)."""
_validate_chunk = ChatCompletionChunk.__pydantic_validator__.validate_python


def json_event(data: bytes) -> dict[str, Any]:
    """One event's JSON object, parsed without a model (a provider with its own wire
    format calls it for every chunk): ``ValueError`` when it is not one."""
    parsed = pydantic_core.from_json(data)
    if not isinstance(parsed, dict):
        raise ValueError("an event must be a JSON object")
    return parsed


def chunk_from(fields: dict[str, Any], provider: str) -> ChatCompletionChunk:
    """A chunk from plain data (validating a dict in pydantic's core is the cheapest way
    to build one), reported as ``provider``'s."""
    chunk: ChatCompletionChunk = _validate_chunk(fields)
    chunk.__dict__["provider"] = provider  # pydantic's __setattr__ costs more
    return chunk


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """What one call and its client say about every provider the call may use.

    Precedence, the same for a single provider and every member of a failover group:
    the call's value, then the provider instance's, then the client's, then the
    environment (a provider's key variable; ``ASYNCPROV_PROXY``, already in
    ``client_proxy``). Headers merge in the same order (the client's are the session's
    defaults).
    """

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    proxy: ProxyConfig | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    client_api_key: str | None = field(default=None, repr=False)
    client_proxy: ProxyConfig | None = None


_R = TypeVar("_R")


class _ClassOrInstanceMethod(Generic[_P, _R]):
    """A method callable on the class (with default configuration) or an instance."""

    def __init__(self, func: Callable[Concatenate[Provider, _P], _R]) -> None:
        self._func = func
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __get__(self, obj: Provider | None, owner: type[Provider]) -> Callable[_P, _R]:
        func = self._func

        @functools.wraps(func)
        def bound(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            # On the class, the default configuration is made only when called.
            target = obj if obj is not None else owner.default()
            return func(target, *args, **kwargs)

        return bound


def _checked_base_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        valid = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and (parts.port is not None or True)
        )
    except ValueError:
        valid = False
    if not valid:
        raise ConfigurationError(
            f"base_url must be an http(s) URL like 'https://host/v1', not {redact(url)!r}"
        )
    return url.rstrip("/")


class Provider(ABC):
    """One LLM chat service.

    Class-level facts describe the service; an instance carries configuration. Passing
    the class anywhere a provider is expected uses its defaults.

    Example:
        >>> from asyncprov.providers import OpenAICompatible
        >>> local = OpenAICompatible(base_url="http://localhost:11434/v1")
    """

    name: str = ""
    """The provider's name, as reported on every chunk (defaults to the class name)."""
    url: ClassVar[str | None] = None
    """The service's home page."""
    base_url: str = ""
    """The API root requests go to; an instance may override it."""
    working: ClassVar[bool] = True
    """False when the service is known broken: never picked automatically."""
    supports_stream: ClassVar[bool] = True
    supports_images: ClassVar[bool] = False
    is_group: ClassVar[bool] = False
    """True for a failover group, which makes its own attempts (and retries)."""
    needs_auth: ClassVar[bool] = False
    default_model: ClassVar[str | None] = None
    models: ClassVar[tuple[str, ...]] = ()
    model_aliases: ClassVar[Mapping[str, str]] = {}
    """Other names for models, mapped to the name sent on the wire."""
    api_key_env: ClassVar[str | None] = None
    """Environment variable the key is read from when none is passed."""
    api_key_env_fallbacks: ClassVar[tuple[str, ...]] = ()
    """Further variables read, in order, when ``api_key_env`` is unset or empty."""
    base_url_env: ClassVar[str | None] = None
    """Environment variable that overrides the default ``base_url`` (gateways, tests)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._api_key = api_key
        if base_url is None and self.base_url_env:
            base_url = os.environ.get(self.base_url_env) or None
        if base_url is not None:
            self.base_url = _checked_base_url(base_url)
        self.proxy: ProxyConfig | None = resolve_proxy(proxy, env={}) if proxy else None
        self.headers: dict[str, str] = dict(headers or {})

    @classmethod
    def default(cls) -> Self:
        """This provider with its default configuration (what passing the class means)."""
        try:
            return cls()
        except TypeError as exc:
            raise ConfigurationError(
                f"{cls.__name__} needs configuration: pass an instance, "
                f"e.g. {cls.__name__}(base_url=...)"
            ) from exc

    def __repr__(self) -> str:
        shown = [f"base_url={redact(self.base_url)!r}"]
        if self._api_key:
            shown.append("api_key='***'")
        if self.proxy is not None:
            shown.append(f"proxy={self.proxy!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    @_ClassOrInstanceMethod
    def with_model(self, model: str, /) -> Provider:
        """This provider always asked for ``model``, whatever model a call names: a
        failover group's member with a model of its own.

        Example:
            >>> RetryProvider([OpenaiChat.with_model("gpt-4o-mini"),
            ...                Anthropic.with_model("claude-3-5-haiku-latest")])
        """
        if not isinstance(model, str) or not model:
            raise ConfigurationError("with_model needs a model name")
        serving = copy.copy(self)
        vars(serving).update(models=(model,), default_model=model, model_aliases={})
        return serving

    def resolved(self, settings: ProviderSettings) -> Provider:
        """This provider as one call uses it: ``settings``' call-level values win over
        this instance's, which win over the client's (see ``ProviderSettings``). Returns
        ``self`` when nothing changes; a failover group resolves every member."""
        key = settings.api_key or self._api_key or settings.client_api_key
        proxy = settings.proxy or self.proxy or settings.client_proxy
        base_url = settings.base_url
        headers = settings.headers
        if (
            key == self._api_key
            and proxy is self.proxy
            and (base_url is None or base_url == self.base_url)
            and not headers
        ):
            return self
        clone = copy.copy(self)
        clone._api_key = key
        clone.proxy = proxy
        if base_url is not None:
            clone.base_url = _checked_base_url(base_url)
        if headers:
            clone.headers = {**self.headers, **headers}
        return clone

    @property
    def has_api_key(self) -> bool:
        """Whether a key was passed or is set in the environment."""
        return self.get_api_key() is not None

    def get_api_key(self) -> str | None:
        """The key: the one passed in, else the environment variable, else ``None``."""
        key = self._api_key
        if not key and self.api_key_env:
            key = os.environ.get(self.api_key_env)
            for variable in self.api_key_env_fallbacks:
                key = key or os.environ.get(variable)
        if not key:
            return None
        key = key.strip()  # keys read from files often end in a newline
        if any(c in key for c in "\r\n\0"):
            raise ConfigurationError(f"the API key for {self.name} contains a line break")
        return key or None

    def require_api_key(self) -> str:
        """The key, or ``MissingAuthError`` saying how to provide one."""
        key = self.get_api_key()
        if key is None:
            where = (
                f" or set the {self.api_key_env} environment variable" if self.api_key_env else ""
            )
            raise MissingAuthError(f"{self.name} needs an API key: pass api_key=...{where}")
        return key

    def resolve_model(self, model: str | None) -> str:
        """The wire name for ``model`` (the default model when ``None``)."""
        if not model:
            if not self.default_model:
                raise ModelNotFoundError(f"{self.name} has no default model: pass model=...")
            return self.default_model
        return self.model_aliases.get(model, model)

    @abstractmethod
    def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Send ``request`` and yield its chunks as they arrive (an async generator).

        Raises ``StreamInterruptedError`` when the body ends before the protocol's
        terminator, and typed errors for everything else.
        """

    async def complete(self, request: ChatRequest, http: HttpCall) -> ChatCompletion:
        """The whole completion; by default the stream, folded. Override when the
        service has a cheaper native non-streaming call giving the same result."""
        # Nothing here tells the deadline about content: the whole reply is one piece of
        # content, so ``first_chunk`` bounds the attempt to its end, as for a JSON body.
        folded = CompletionAccumulator()
        async with contextlib.aclosing(self.stream(request, http)) as chunks:
            async for chunk in chunks:
                folded.add(chunk)
        return folded.completion(provider=self.name)

    @_ClassOrInstanceMethod
    def create_completion(
        self,
        /,
        model: str | None = None,
        messages: str | list[MessageInput] | None = None,
        stream: bool = True,
        proxy: str | None = None,
        auth: str | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """Stream the reply as plain text tokens, synchronously.

        Works on the class (``Raycast.create_completion(...)``) or an instance, and also
        from inside a running event loop.

        Example:
            >>> for token in OpenaiChat.create_completion(model="gpt-4o", messages=msgs):
            ...     print(token, end="")
        """
        # The shims consume the public client; imported at call time so the provider
        # layer never depends on the client layers at import.
        from .._tokens import create_completion

        return create_completion(
            self, model, messages, stream=stream, proxy=proxy, auth=auth, **kwargs
        )

    @_ClassOrInstanceMethod
    def create_async_generator(
        self,
        /,
        model: str | None = None,
        messages: str | list[MessageInput] | None = None,
        stream: bool = True,
        proxy: str | None = None,
        auth: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Stream the reply as plain text tokens, asynchronously (see ``create_completion``)."""
        from .._tokens import create_async_generator

        return create_async_generator(
            self, model, messages, stream=stream, proxy=proxy, auth=auth, **kwargs
        )
