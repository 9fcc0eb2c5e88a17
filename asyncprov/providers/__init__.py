"""Providers: one class per service or wire format.

Concrete providers are imported on first access, so ``import asyncprov`` (and the
provider contract in ``base``) never loads a provider module.
"""

from typing import TYPE_CHECKING, Any

from .base import Provider as Provider

if TYPE_CHECKING:
    from .._failover import RetryProvider as RetryProvider
    from .openai import OpenaiChat as OpenaiChat
    from .openai import OpenAICompatible as OpenAICompatible
    from .raycast import Raycast as Raycast
    from .reka import Reka as Reka

__all__ = ["OpenAICompatible", "OpenaiChat", "Provider", "Raycast", "Reka", "RetryProvider"]


def __getattr__(name: str) -> Any:
    from .._registry import provider_class, registered_names

    if name in registered_names():
        return provider_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
