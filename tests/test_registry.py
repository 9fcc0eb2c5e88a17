"""Tests for provider and model name resolution (``asyncprov._registry``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from asyncprov import ConfigurationError, ModelNotFoundError, ProviderNotFoundError
from asyncprov._registry import (
    provider_class,
    provider_for_model,
    registered_names,
    resolve_provider,
)
from asyncprov.providers import OpenaiChat, OpenAICompatible, Provider


def test_registered_names() -> None:
    """The registry knows OpenaiChat and OpenAICompatible, OpenaiChat first."""
    names = registered_names()
    assert names[:2] == ("OpenaiChat", "OpenAICompatible")


@pytest.mark.parametrize("name", ["OpenaiChat", "openaichat", "OPENAICHAT", "OpenAIChat"])
def test_provider_class_case_insensitive(name: str) -> None:
    """provider_class finds a provider by name, ignoring case."""
    assert provider_class(name) is OpenaiChat


def test_provider_class_compatible() -> None:
    """OpenAICompatible is registered under its own name."""
    assert provider_class("openaicompatible") is OpenAICompatible


def test_provider_class_unknown_suggests() -> None:
    """An unknown provider name raises ProviderNotFoundError suggesting close names."""
    with pytest.raises(ProviderNotFoundError) as info:
        provider_class("OpenAIChatt")
    message = str(info.value)
    assert message.startswith("unknown provider 'OpenAIChatt'; did you mean ")
    assert "'OpenaiChat'" in message
    assert isinstance(info.value, ConfigurationError)


def test_provider_class_unknown_without_match() -> None:
    """A name like nothing known raises without a suggestion."""
    with pytest.raises(ProviderNotFoundError) as info:
        provider_class("Zzzqqq")
    assert str(info.value) == "unknown provider 'Zzzqqq'"


def test_resolve_provider_from_class() -> None:
    """A class gives a fresh instance with its defaults."""
    provider = resolve_provider(OpenaiChat)
    assert type(provider) is OpenaiChat
    assert provider.base_url == "https://api.openai.com/v1"
    assert resolve_provider(OpenaiChat) is not provider


def test_resolve_provider_from_instance() -> None:
    """An instance is returned as it is."""
    local = OpenAICompatible(base_url="http://127.0.0.1:9/v1/")
    assert resolve_provider(local) is local
    chat = OpenaiChat(api_key="sk-test")
    assert resolve_provider(chat) is chat


@pytest.mark.parametrize("name", ["OpenaiChat", "openaichat"])
def test_resolve_provider_from_name(name: str) -> None:
    """A name gives an instance of the registered class."""
    provider = resolve_provider(name)
    assert type(provider) is OpenaiChat
    assert isinstance(provider, Provider)


@pytest.mark.parametrize("spec", ["OpenAICompatible", OpenAICompatible])
def test_resolve_provider_needs_configuration(spec: str | type[Provider]) -> None:
    """A provider that cannot be built from defaults asks for an instance with base_url."""
    with pytest.raises(ConfigurationError) as info:
        resolve_provider(spec)
    assert str(info.value) == (
        "OpenAICompatible needs configuration: pass an instance, "
        "e.g. OpenAICompatible(base_url=...)"
    )
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(
    ("spec", "type_name"),
    [(42, "int"), (None, "NoneType"), (int, "type"), (b"OpenaiChat", "bytes")],
)
def test_resolve_provider_rejects_other_types(spec: object, type_name: str) -> None:
    """Anything but a Provider class, instance or name raises ConfigurationError."""
    with pytest.raises(ConfigurationError) as info:
        resolve_provider(spec)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"provider must be a Provider class, instance or name, not {type_name}"
    )


def test_resolve_provider_unknown_name() -> None:
    """An unknown name raises ProviderNotFoundError."""
    with pytest.raises(ProviderNotFoundError):
        resolve_provider("NoSuchProvider")


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "o3-mini"])
def test_provider_for_model(model: str) -> None:
    """A known OpenAI model resolves to an OpenaiChat instance."""
    provider = provider_for_model(model)
    assert type(provider) is OpenaiChat


def test_provider_for_model_unknown_suggests() -> None:
    """An unknown model raises ModelNotFoundError suggesting close model names."""
    with pytest.raises(ModelNotFoundError) as info:
        provider_for_model("gpt-4oo")
    message = str(info.value)
    assert message.startswith("no provider is known for model 'gpt-4oo'; did you mean 'gpt-4o'")
    assert message.endswith("pass provider=... to use it anyway")
    assert isinstance(info.value, ConfigurationError)


IMPORT_CHECK = textwrap.dedent(
    """
    import sys
    import asyncprov
    print(sorted(m for m in sys.modules if m.startswith("asyncprov.")))
    from asyncprov import AsyncClient
    loaded = sorted(m for m in sys.modules if m.startswith("asyncprov.providers"))
    print(",".join(loaded))
    from asyncprov.providers import OpenaiChat
    print(OpenaiChat.__module__, OpenaiChat.__name__)
    try:
        from asyncprov.providers import NoSuchProvider
    except ImportError:
        print("ImportError")
    lazy = ("asyncprov._batch", "asyncprov._ratelimit", "asyncprov._sync_batch")
    print([m for m in lazy if m in sys.modules])
    from asyncprov import Batch, RateLimit
    print(RateLimit.__name__, Batch.__name__, "RateLimits" in dir(asyncprov))
    """
)


def test_import_loads_no_concrete_provider() -> None:
    """``import asyncprov`` loads nothing but its version; the client loads only providers
    and providers.base; OpenaiChat loads on demand."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "['asyncprov._version']",
        "asyncprov.providers,asyncprov.providers.base",
        "asyncprov.providers.openai OpenaiChat",
        "ImportError",
        "[]",  # batch jobs and rate limits load on first use
        "RateLimit Batch True",
    ]
