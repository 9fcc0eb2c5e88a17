"""OpenAI's own API, and any server that speaks its Chat Completions format."""

from __future__ import annotations

from collections.abc import Mapping

from ._openai_wire import OpenAIWire

__all__ = ["OpenAICompatible", "OpenaiChat"]


class OpenAICompatible(OpenAIWire):
    """Any OpenAI-compatible server: vLLM, Ollama, llama.cpp, LM Studio, Groq, Together,
    OpenRouter, DeepSeek, Mistral, LiteLLM's proxy, or asyncprov's own gateway.

    No key is read from the environment (a key meant for OpenAI must never reach a
    third-party host); pass ``api_key=`` when the server wants one. ``name=`` sets the
    name reported on chunks and used by failover (e.g. "ollama", "vllm-eu").

    Example:
        >>> ollama = OpenAICompatible(base_url="http://localhost:11434/v1")
    """

    url = None

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        proxy: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, proxy=proxy, headers=headers)
        if name:
            self.name = name


class OpenaiChat(OpenAIWire):
    """OpenAI's chat models; the key comes from ``api_key=`` or ``OPENAI_API_KEY``."""

    url = "https://platform.openai.com"
    base_url = "https://api.openai.com/v1"
    needs_auth = True
    api_key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_model = "gpt-4o-mini"
    models = (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4-turbo",
        "gpt-4",
        "gpt-3.5-turbo",
        "o1",
        "o3-mini",
        "o4-mini",
    )
