"""Named OpenAI-compatible hosts: each reads only its own key variable, points at its own
API root (overridable), and routes its models."""

from __future__ import annotations

import pytest

from asyncprov import AsyncClient, MissingAuthError
from asyncprov.providers import provider_class
from asyncprov.testing import OpenAITestServer

KEYED = ["Groq", "DeepSeek", "Mistral", "OpenRouter", "Together", "XAI", "Fireworks"]
LOCAL = ["Ollama", "VLLM", "LMStudio"]


@pytest.mark.parametrize("name", KEYED)
async def test_a_host_sends_only_its_own_key(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """With every host's key set, a host sends its own, to its base URL (from its
    base-URL variable here)."""
    cls = provider_class(name)
    for other in KEYED:
        env = provider_class(other).api_key_env
        assert env is not None
        monkeypatch.setenv(env, f"key-of-{other}-123456")
    monkeypatch.setenv("OPENAI_API_KEY", "key-of-openai-123456")
    assert cls.base_url_env is not None
    monkeypatch.setenv(cls.base_url_env, server.base_url)
    async with AsyncClient(name, max_retries=0) as client:
        reply = await client.chat.completions.create(messages="hi")
    assert reply.provider == cls.name
    assert server.requests[-1].headers["Authorization"] == f"Bearer key-of-{name}-123456"
    assert server.requests[-1].json["model"] == cls.default_model


@pytest.mark.parametrize("name", KEYED)
async def test_a_host_without_its_key_sends_nothing(name: str) -> None:
    """No key variable for the host: MissingAuthError naming it, before any request."""
    async with AsyncClient(name) as client:
        with pytest.raises(MissingAuthError, match=provider_class(name).api_key_env or ""):
            await client.chat.completions.create(messages="hi")


@pytest.mark.parametrize("name", LOCAL)
async def test_a_local_server_gets_no_key(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Local servers need no key, and never get another host's."""
    monkeypatch.setenv("OPENAI_API_KEY", "key-of-openai-123456")
    provider = provider_class(name)(base_url=server.base_url)
    async with AsyncClient(provider, max_retries=0) as client:
        await client.chat.completions.create(model="llama3.2", messages="hi")
    assert "Authorization" not in server.requests[-1].headers


async def test_host_models_route_to_their_host(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model="deepseek-chat" routes to DeepSeek with no provider given."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "key-of-deepseek-1234")
    monkeypatch.setenv("DEEPSEEK_BASE_URL", server.base_url)
    async with AsyncClient(max_retries=0) as client:
        reply = await client.chat.completions.create(model="deepseek-chat", messages="hi")
    assert reply.provider == "DeepSeek"
