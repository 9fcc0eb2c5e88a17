"""Provider and model names, resolved to provider instances; provider modules are
imported only when a name is first looked up."""

from __future__ import annotations

import functools
import importlib
from typing import TypeAlias

from ._errors import (
    ConfigurationError,
    ModelNotFoundError,
    ProviderNotFoundError,
    ProviderNotWorkingError,
)
from .providers.base import Provider

__all__ = [
    "ProviderInput",
    "provider_class",
    "provider_for_model",
    "registered_names",
    "resolve_provider",
]

ProviderInput: TypeAlias = type[Provider] | Provider | str
"""A provider as callers may give it: a class, a configured instance, or its name."""

# name -> module; the order is the preference when several providers serve a model.
_PROVIDER_MODULES: dict[str, str] = {
    "OpenaiChat": "asyncprov.providers.openai",
    "OpenAICompatible": "asyncprov.providers.openai",
    "Reka": "asyncprov.providers.reka",
    "Raycast": "asyncprov.providers.raycast",
    "Anthropic": "asyncprov.providers.anthropic",
    "Gemini": "asyncprov.providers.gemini",
    "Groq": "asyncprov.providers.hosts",
    "DeepSeek": "asyncprov.providers.hosts",
    "Mistral": "asyncprov.providers.hosts",
    "OpenRouter": "asyncprov.providers.hosts",
    "Together": "asyncprov.providers.hosts",
    "XAI": "asyncprov.providers.hosts",
    "Fireworks": "asyncprov.providers.hosts",
    "Ollama": "asyncprov.providers.hosts",
    "VLLM": "asyncprov.providers.hosts",
    "LMStudio": "asyncprov.providers.hosts",
    "RetryProvider": "asyncprov._failover",
}


def registered_names() -> tuple[str, ...]:
    """Names of every registered provider."""
    return tuple(_PROVIDER_MODULES)


def _close(name: str, known: list[str]) -> str:
    import difflib  # only an unknown name needs it; kept off the call path

    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if not matches:
        lowered = name.lower()
        matches = [k for k in known if lowered in k.lower()][:3]
    return f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name`` (case-insensitive)."""
    exact = {k.lower(): k for k in _PROVIDER_MODULES}
    key = exact.get(name.lower())
    if key is None:
        raise ProviderNotFoundError(
            f"unknown provider {name!r}{_close(name, list(_PROVIDER_MODULES))}"
        )
    module = importlib.import_module(_PROVIDER_MODULES[key])
    cls: type[Provider] = getattr(module, key)
    return cls


def resolve_provider(spec: ProviderInput) -> Provider:
    """A provider instance from a class (its defaults), an instance, or a name."""
    if isinstance(spec, Provider):
        return spec
    if isinstance(spec, str):
        return provider_class(spec).default()
    if isinstance(spec, type) and issubclass(spec, Provider):
        return spec.default()
    raise ConfigurationError(
        f"provider must be a Provider class, instance or name, not {type(spec).__name__}"
    )


@functools.cache
def _model_table() -> dict[str, tuple[type[Provider], ...]]:
    table: dict[str, list[type[Provider]]] = {}
    for name in _PROVIDER_MODULES:
        cls = provider_class(name)
        for model in (*cls.models, *cls.model_aliases):
            table.setdefault(model, [])
            if cls not in table[model]:
                table[model].append(cls)
    return {model: tuple(classes) for model, classes in table.items()}


_PREFIXES = {"claude-": "Anthropic", "gemini-": "Gemini"}
"""Vendors whose new model names are routed before this table lists them."""


def provider_for_model(model: str) -> Provider:
    """The preferred working provider serving ``model`` (a listed model, or a name with
    a vendor's prefix: ``claude-...``, ``gemini-...``)."""
    table = _model_table()
    classes = table.get(model)
    if not classes:
        prefix = next((p for p in _PREFIXES if model.startswith(p)), None)
        if prefix is not None:
            return provider_class(_PREFIXES[prefix]).default()
    if not classes:
        raise ModelNotFoundError(
            f"no provider is known for model {model!r}{_close(model, sorted(table))}; "
            "pass provider=... to use it anyway"
        )
    working = [cls for cls in classes if cls.working]
    if not working:
        names = ", ".join(cls.name for cls in classes)
        raise ProviderNotWorkingError(
            f"model {model!r} is only served by providers marked not working ({names}); "
            "pass provider=... explicitly to try one"
        )
    return working[0].default()
