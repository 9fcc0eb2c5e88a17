"""Providers: one class per service or wire format.

Concrete providers are imported on first access, so ``import asyncprov`` (and the
provider contract in ``base``) never loads a provider module. ``provider_names()``
lists every registered provider and ``provider_class(name)`` looks one up (an unknown
name raises ``ProviderNotFoundError`` naming close matches); ``provider_for_model(model)``
is the provider a model name routes to.
"""

from typing import TYPE_CHECKING, Any

from .base import Provider as Provider
from .base import ProviderSettings as ProviderSettings

if TYPE_CHECKING:
    from .._failover import RetryProvider as RetryProvider
    from .._registry import provider_class as provider_class
    from .._registry import provider_for_model as provider_for_model
    from .._registry import registered_names as provider_names
    from .anthropic import Anthropic as Anthropic
    from .gemini import Gemini as Gemini
    from .hosts import VLLM as VLLM
    from .hosts import XAI as XAI
    from .hosts import DeepSeek as DeepSeek
    from .hosts import Fireworks as Fireworks
    from .hosts import Groq as Groq
    from .hosts import LMStudio as LMStudio
    from .hosts import Mistral as Mistral
    from .hosts import Ollama as Ollama
    from .hosts import OpenRouter as OpenRouter
    from .hosts import Together as Together
    from .openai import OpenaiChat as OpenaiChat
    from .openai import OpenAICompatible as OpenAICompatible
    from .raycast import Raycast as Raycast
    from .reka import Reka as Reka

__all__ = [
    "Anthropic",
    "DeepSeek",
    "Fireworks",
    "Gemini",
    "Groq",
    "LMStudio",
    "Mistral",
    "Ollama",
    "OpenAICompatible",
    "OpenRouter",
    "OpenaiChat",
    "Provider",
    "ProviderSettings",
    "Raycast",
    "Reka",
    "RetryProvider",
    "Together",
    "VLLM",
    "XAI",
    "provider_class",
    "provider_for_model",
    "provider_names",
]


def __getattr__(name: str) -> Any:
    from .._registry import provider_class, provider_for_model, registered_names

    if name == "provider_class":
        return provider_class
    if name == "provider_for_model":
        return provider_for_model
    if name == "provider_names":
        return registered_names
    if name in registered_names():
        return provider_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
