"""The gateway's configuration: a TOML file (or command-line flags) checked into routes.

A configuration declares providers (a type, a base URL, the *name* of the environment
variable holding the key, the models it serves) and model routes (a failover group and
how to run it). Everything is checked at start, and the first problem is reported with
the field it is in: ``providers.local.base_url: Field required``. Keys never appear in
the file, in a message or in a log line; only variable names do.

Example file (``examples/gateway.toml`` has a commented one)::

    [server]
    port = 8000
    client_keys_env = "GATEWAY_KEYS"

    [providers.openai]
    type = "OpenaiChat"
    api_key_env = "OPENAI_API_KEY"
    models = ["gpt-4o-mini"]

    [providers.local]
    type = "OpenAICompatible"
    base_url = "http://127.0.0.1:11434/v1"
    models = ["llama3.2"]

    [routes.chat]
    providers = ["openai", "local"]
    mode = "hedged"
    hedge_delay = 1.5
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .. import AsyncProvError, ConfigurationError, RateLimit, SharedState, Timeout
from ..providers import Provider, provider_class, provider_names

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "GatewayConfig",
    "ProviderConfig",
    "Route",
    "RouteConfig",
    "ServerConfig",
    "SharedStateConfig",
    "Target",
    "TimeoutConfig",
    "build_routes",
    "load_config",
    "parse_config",
]

DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
"""The largest request body accepted (413 above it): room for a few inline images."""

DEFAULT_GATEWAY_EVENT_SIZE = 1024 * 1024
"""The largest upstream event the gateway relays by default (the library's is 8 MiB)."""


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored setting; `port = true` or
    # `shuffle = "yes"` are errors too, not coerced.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Name = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ServerConfig(_Section):
    """``[server]``: where the gateway listens and whom it lets in."""

    host: Name = "127.0.0.1"
    """The address to bind: loopback unless told otherwise."""
    port: int = Field(default=8000, ge=0, le=65535)
    client_keys: list[Name] = Field(default=[], repr=False)
    """Bearer keys clients must present (prefer ``client_keys_env``)."""
    client_keys_env: Name | None = None
    """An environment variable holding comma-separated client keys."""
    max_body_size: int = Field(default=DEFAULT_MAX_BODY_SIZE, gt=0)
    grace_period: Seconds = 10.0
    """Seconds in-flight requests may take to finish at shutdown."""
    idle_timeout: PositiveSeconds = 60.0
    """Seconds a connection may sit idle, or take to send a request's headers."""
    body_timeout: PositiveSeconds = 60.0
    """Seconds a request may take to send its whole body (408 past it)."""
    send_timeout: PositiveSeconds = 60.0
    """Seconds a client may leave an answer unread before it is disconnected."""
    max_connections: int = Field(default=1024, ge=1)
    """Connections open at once; one more is answered 503 and closed."""
    access_log: bool = False
    """Log one line per request (aiohttp's access log, at INFO): off by default, as it
    costs more than the rest of a request's handling."""
    workers: int = Field(default=1, ge=1, le=256)
    """Processes serving the one port (they share its connections); with more than
    one, give the limits a Redis (``[shared_state]`` or ``--redis``) so they hold
    across workers."""
    metrics: bool | None = None
    """Serve Prometheus metrics at ``GET /metrics`` (default: when prometheus-client,
    the ``asyncprov[prometheus]`` extra, is installed)."""
    metrics_keys_env: Name | None = None
    """An environment variable holding comma-separated keys a scraper must present at
    ``/metrics`` (default: the client keys)."""
    max_event_size: int = Field(default=DEFAULT_GATEWAY_EVENT_SIZE, gt=0)
    """The largest upstream event (or non-streamed body) relayed, in bytes (502 above
    it). At most about ``max_connections`` x ``max_event_size`` bytes of events are
    buffered at once."""

    def keys(self) -> list[str]:
        """Every client key: the listed ones and those in ``client_keys_env``. Keys asked
        for but empty are an error, never a silently open gateway."""
        keys = [key.strip() for key in self.client_keys]
        if any(not key for key in keys):
            raise ConfigurationError("server.client_keys: a key is blank")
        if self.client_keys_env:
            keys.extend(_keys_in("server.client_keys_env", self.client_keys_env))
        return keys

    def scrape_keys(self) -> list[str] | None:
        """The keys ``/metrics`` asks for, when they are not the client keys."""
        if self.metrics_keys_env is None:
            return None
        return _keys_in("server.metrics_keys_env", self.metrics_keys_env)


def _keys_in(field: str, variable: str) -> list[str]:
    """The comma-separated keys in environment ``variable`` (set, and not empty)."""
    where = f"{field}: the environment variable {variable}"
    value = os.environ.get(variable)
    if value is None:
        raise ConfigurationError(f"{where} is not set")
    found = [key.strip() for key in value.split(",") if key.strip()]
    if not found:
        raise ConfigurationError(f"{where} holds no keys (comma-separated)")
    return found


class ProviderConfig(_Section):
    """``[providers.NAME]``: one upstream service."""

    type: str
    """A provider class name, e.g. ``OpenAICompatible``, ``OpenaiChat``, ``Reka``."""
    base_url: Name | None = None
    api_key_env: Name | None = None
    """The *name* of the environment variable holding the key (never the key)."""
    models: list[Name] = []
    """Models it serves; the first is sent when a route names another model."""
    rpm: PositiveNumber | None = None
    """Requests per minute sent to it, at most (across workers with a shared state)."""
    tpm: PositiveNumber | None = None
    """Tokens per minute, at most (estimated when sent, settled by the usage reported)."""
    concurrency: int | None = Field(default=None, ge=1)
    """Requests in flight to it at once, at most."""

    def rate_limit(self) -> RateLimit | None:
        """Its limits, if it has any."""
        if self.rpm is None and self.tpm is None and self.concurrency is None:
            return None
        return RateLimit(rpm=self.rpm, tpm=self.tpm, concurrency=self.concurrency)

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None and "@" in urlsplit(value).netloc:
            raise ValueError("credentials in the URL are not supported; use api_key_env")
        return value

    @field_validator("models")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a model is listed twice")
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        names = [n for n in provider_names() if n != "RetryProvider"]
        if value.lower() not in {n.lower() for n in names}:
            raise ValueError(f"unknown provider type {value!r}; one of {', '.join(names)}")
        return value


class Target(_Section):
    """One member of a route's failover group, with the model to ask it for."""

    provider: Name
    model: Name | None = None


class RouteConfig(_Section):
    """``[routes.MODEL]``: the failover group answering a model name."""

    providers: list[str | Target] = Field(min_length=1)
    """Provider names (or ``{provider = ..., model = ...}``), tried in this order."""
    mode: Literal["sequential", "hedged"] = "sequential"
    """``hedged`` also starts the next provider when one shows no content in time."""
    hedge_delay: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Seconds without content before hedging (2 when not given; ``hedged`` only)."""
    shuffle: bool = False

    @model_validator(mode="after")
    def _hedge_delay_needs_hedging(self) -> Self:
        if self.hedge_delay is not None and self.mode != "hedged":
            raise ValueError('hedge_delay is only used with mode = "hedged"')
        return self


class TimeoutConfig(Timeout):
    """``[timeouts]``: ``Timeout``, read strictly (``total = true`` is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class SharedStateConfig(_Section):
    """``[shared_state]``: the Redis that workers and machines share limits and
    provider health through (``SharedState``)."""

    url_env: Name
    """The *name* of the environment variable holding the ``redis://`` URL (it may
    hold a password, so never the URL itself)."""
    namespace: Name = "asyncprov"
    on_error: Literal["open", "closed"] = "open"
    """``open``: each worker goes on with its own limits while Redis is away;
    ``closed``: requests fail (503) instead."""

    def shared_state(self, url: str | None = None) -> SharedState:
        """The ``SharedState`` (with ``url`` instead of the variable's, when given)."""
        if url is None:
            url = os.environ.get(self.url_env, "").strip()
            if not url:
                raise ConfigurationError(
                    f"shared_state.url_env: the environment variable {self.url_env} is not set"
                )
        return SharedState(url, namespace=self.namespace, on_error=self.on_error)


class GatewayConfig(_Section):
    """A whole gateway configuration, as read from TOML."""

    server: ServerConfig = ServerConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    providers: dict[Name, ProviderConfig] = Field(min_length=1)
    routes: dict[Name, RouteConfig] = {}
    shared_state: SharedStateConfig | None = None

    def rate_limits(self) -> dict[str, RateLimit]:
        """The providers' limits, by provider name."""
        return {
            name: limit
            for name, spec in self.providers.items()
            if (limit := spec.rate_limit()) is not None
        }

    def targets(self, route: RouteConfig) -> list[Target]:
        """The route's members as ``Target``s."""
        return [Target(provider=t) if isinstance(t, str) else t for t in route.providers]


@dataclass(frozen=True)
class Route:
    """What answers one public model name: a provider (possibly a failover group) and
    the model name to send it."""

    provider: Provider
    model: str


def _serving(provider: Provider, models: list[str]) -> Provider:
    """A copy of ``provider`` listing ``models``, the first its default. With one model
    it sends that one whatever model a route asks for (the failover engine sends a
    provider its default model when it lists others)."""
    if len(models) == 1:
        return provider.with_model(models[0])
    serving = copy.copy(provider)
    vars(serving).update(models=tuple(models), default_model=models[0])
    return serving


def _build_provider(name: str, spec: ProviderConfig) -> Provider:
    where = f"providers.{name}"
    cls = provider_class(spec.type)
    options: dict[str, Any] = {}
    if spec.base_url is not None:
        options["base_url"] = spec.base_url
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env, "").strip()
        if not key:
            raise ConfigurationError(
                f"{where}.api_key_env: the environment variable {spec.api_key_env} is not set"
            )
        options["api_key"] = key
    try:
        provider = cls(**options)
    except TypeError:
        if "base_url" not in options:
            raise ConfigurationError(f"{where}.base_url: {spec.type} needs a base_url") from None
        raise ConfigurationError(f"{where}: {spec.type} takes no base_url") from None
    except AsyncProvError as error:
        raise ConfigurationError(f"{where}: {error}") from None
    provider = _serving(provider, spec.models) if spec.models else copy.copy(provider)
    provider.name = name  # failover, health and every chunk report the configured name
    if provider.needs_auth and not provider.has_api_key:
        env = provider.api_key_env or "a key variable"
        raise ConfigurationError(
            f"{where}.api_key_env: {spec.type} needs a key; set {env} or name another variable"
        )
    return provider


def build_routes(config: GatewayConfig) -> tuple[dict[str, Route] | None, Provider | None]:
    """Every public model name and what answers it, as ``(routes, None)``.

    Explicit ``[routes]`` come first; every model a provider lists and no route names
    is routed too, to the providers listing it in declaration order. A lone provider
    with no models and no routes is a pass-through: ``(None, provider)``, and every
    model name goes to it as asked.
    """
    from ..providers import RetryProvider

    providers = {name: _build_provider(name, spec) for name, spec in config.providers.items()}
    routes: dict[str, Route] = {}
    for model, route in config.routes.items():
        members: list[Provider] = []
        for index, target in enumerate(config.targets(route)):
            provider = providers.get(target.provider)
            if provider is None:
                raise ConfigurationError(
                    f"routes.{model}.providers[{index}]: unknown provider "
                    f"{target.provider!r}; declared: {', '.join(providers)}"
                )
            upstream = target.model or (model if model in provider.models else None)
            upstream = upstream or provider.default_model or model
            members.append(_serving(provider, [upstream]))
        if len(members) == 1 and route.mode == "sequential":
            routes[model] = Route(members[0], members[0].default_model or model)
        else:
            group = RetryProvider(
                members,
                shuffle=route.shuffle,
                hedge=route.mode == "hedged",
                hedge_delay=route.hedge_delay or 2.0,
            )
            routes[model] = Route(group, model)
    serving: dict[str, list[Provider]] = {}
    for provider in providers.values():
        for model in provider.models:
            if model not in routes:
                serving.setdefault(model, []).append(_serving(provider, [model]))
    for model, members in serving.items():
        one = members[0] if len(members) == 1 else RetryProvider(members, shuffle=False)
        routes[model] = Route(one, model)
    if not routes:
        if len(providers) == 1:
            return None, next(iter(providers.values()))
        raise ConfigurationError(
            "routes: no model is served; list models under a provider or add [routes.NAME]"
        )
    return routes, None


def parse_config(data: Mapping[str, Any], *, source: str = "configuration") -> GatewayConfig:
    """Check a configuration mapping (as from TOML); errors name the field."""
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError.from_validation(exc, what=source) from None


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and check a TOML configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read {file.name}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file.name} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{file.name} is not valid TOML: {error}") from None
    return parse_config(data, source=f"configuration in {file.name}")
