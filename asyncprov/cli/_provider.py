"""The provider (and the Redis) a command line names, checked before anything is sent,
with every problem said in command-line words (flags, not keyword arguments)."""

from __future__ import annotations

from asyncprov import (
    ConfigurationError,
    ModelNotFoundError,
    ProviderNotFoundError,
    ProviderNotWorkingError,
    SharedState,
)
from asyncprov.providers import Provider, provider_class, provider_for_model

from ._errors import UsageError

__all__ = ["check_provider", "redis_flag"]


def redis_flag(url: str | None) -> SharedState | None:
    """``--redis URL`` as a ``SharedState``; a bad URL is a usage error (never echoed)."""
    if url is None:
        return None
    try:
        return SharedState(url)
    except ConfigurationError as error:
        reason = str(error).split(": ", 2)[-1]
        raise UsageError(f"--redis: {reason}") from None


def check_provider(
    name: str | None,
    *,
    base_url: str | None,
    api_key: str | None,
    model: str | None,
    key_flag: str = "--api-key",
) -> None:
    """Raise ``UsageError`` for a ``--provider``/``--base-url``/``--model`` choice that
    cannot work from the command line: a provider that combines others, one that needs
    ``--base-url``, a key that is missing, or nothing to route by."""
    if name is None:
        if base_url is not None:
            return  # an OpenAI-compatible server: any model, no key needed
        if not model:
            raise UsageError("give --model (or --provider, or --base-url)")
        try:
            name = provider_for_model(model).name  # the provider the model routes to
        except (ModelNotFoundError, ProviderNotWorkingError):
            raise UsageError(
                f"--model {model}: no provider is known for it; give --provider or --base-url"
            ) from None
    try:
        cls = provider_class(name)
    except ProviderNotFoundError as error:
        raise UsageError(f"--provider {name}: {error}") from None
    if cls.is_group:
        raise UsageError(
            f"--provider {name} cannot be used from the command line: it combines other "
            "providers (use asyncprov serve with a --config file, or the Python API)"
        )
    if base_url is None and not cls.base_url:
        raise UsageError(f"--provider {name} needs --base-url URL")
    try:
        provider: Provider = cls(base_url=base_url) if base_url else cls.default()
    except (ConfigurationError, TypeError):
        raise UsageError(f"--provider {name} cannot be used from the command line") from None
    if provider.needs_auth and not api_key and not provider.has_api_key:
        where = (
            f"set {cls.api_key_env} or pass {key_flag}" if cls.api_key_env else f"pass {key_flag}"
        )
        raise UsageError(f"{name} needs an API key: {where}")
