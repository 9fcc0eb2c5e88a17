"""Named hosts that speak OpenAI's Chat Completions format: configuration over
``OpenAIWire`` (a base URL, a key variable, a base-URL variable, a few model names).

Each class reads only its own key variable, so a key meant for one host is never sent
to another. The local servers (Ollama, vLLM, LM Studio) need no key.
"""

from __future__ import annotations

from ._openai_wire import OpenAIWire

__all__ = [
    "DeepSeek",
    "Fireworks",
    "Groq",
    "LMStudio",
    "Mistral",
    "Ollama",
    "OpenRouter",
    "Together",
    "VLLM",
    "XAI",
]


class Groq(OpenAIWire):
    """Groq's OpenAI-compatible API; the key comes from ``GROQ_API_KEY``."""

    url = "https://groq.com"
    base_url = "https://api.groq.com/openai/v1"
    needs_auth = True
    api_key_env = "GROQ_API_KEY"
    base_url_env = "GROQ_BASE_URL"
    default_model = "llama-3.1-8b-instant"
    models = ("llama-3.1-8b-instant", "llama-3.3-70b-versatile", "gemma2-9b-it")


class DeepSeek(OpenAIWire):
    """DeepSeek's API; the key comes from ``DEEPSEEK_API_KEY``."""

    url = "https://www.deepseek.com"
    base_url = "https://api.deepseek.com/v1"
    needs_auth = True
    api_key_env = "DEEPSEEK_API_KEY"
    base_url_env = "DEEPSEEK_BASE_URL"
    default_model = "deepseek-chat"
    models = ("deepseek-chat", "deepseek-reasoner")


class Mistral(OpenAIWire):
    """Mistral's API; the key comes from ``MISTRAL_API_KEY``."""

    url = "https://mistral.ai"
    base_url = "https://api.mistral.ai/v1"
    needs_auth = True
    api_key_env = "MISTRAL_API_KEY"
    base_url_env = "MISTRAL_BASE_URL"
    default_model = "mistral-small-latest"
    models = ("mistral-small-latest", "mistral-large-latest", "pixtral-large-latest")


class OpenRouter(OpenAIWire):
    """OpenRouter (many vendors' models behind one key, ``OPENROUTER_API_KEY``)."""

    url = "https://openrouter.ai"
    base_url = "https://openrouter.ai/api/v1"
    needs_auth = True
    api_key_env = "OPENROUTER_API_KEY"
    base_url_env = "OPENROUTER_BASE_URL"
    default_model = "openai/gpt-4o-mini"
    models = ("openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet", "google/gemini-2.0-flash-001")


class Together(OpenAIWire):
    """Together AI; the key comes from ``TOGETHER_API_KEY``."""

    url = "https://www.together.ai"
    base_url = "https://api.together.xyz/v1"
    needs_auth = True
    api_key_env = "TOGETHER_API_KEY"
    base_url_env = "TOGETHER_BASE_URL"
    default_model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    models = ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "Qwen/Qwen2.5-72B-Instruct-Turbo")


class XAI(OpenAIWire):
    """xAI's Grok models; the key comes from ``XAI_API_KEY``."""

    name = "xAI"
    url = "https://x.ai"
    base_url = "https://api.x.ai/v1"
    needs_auth = True
    api_key_env = "XAI_API_KEY"
    base_url_env = "XAI_BASE_URL"
    default_model = "grok-3-mini"
    models = ("grok-3-mini", "grok-3")


class Fireworks(OpenAIWire):
    """Fireworks AI; the key comes from ``FIREWORKS_API_KEY``."""

    url = "https://fireworks.ai"
    base_url = "https://api.fireworks.ai/inference/v1"
    needs_auth = True
    api_key_env = "FIREWORKS_API_KEY"
    base_url_env = "FIREWORKS_BASE_URL"
    default_model = "accounts/fireworks/models/llama-v3p1-70b-instruct"
    models = ("accounts/fireworks/models/llama-v3p1-70b-instruct",)


class Ollama(OpenAIWire):
    """A local Ollama server (no key; any model it has pulled)."""

    url = "https://ollama.com"
    base_url = "http://localhost:11434/v1"
    base_url_env = "OLLAMA_BASE_URL"


class VLLM(OpenAIWire):
    """A local vLLM server (no key unless it was started with one: pass ``api_key=``)."""

    name = "vLLM"
    url = "https://docs.vllm.ai"
    base_url = "http://localhost:8000/v1"
    base_url_env = "VLLM_BASE_URL"


class LMStudio(OpenAIWire):
    """A local LM Studio server (no key)."""

    url = "https://lmstudio.ai"
    base_url = "http://localhost:1234/v1"
    base_url_env = "LMSTUDIO_BASE_URL"
