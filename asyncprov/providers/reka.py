"""Reka's OpenAI-compatible chat endpoint."""

from __future__ import annotations

from ._openai_wire import OpenAIWire

__all__ = ["Reka"]


class Reka(OpenAIWire):
    """Reka's chat models (``reka-core`` by default), with image input.

    The key comes from ``api_key=`` or ``REKA_API_KEY`` and is sent as ``X-Api-Key``.
    """

    url = "https://reka.ai"
    base_url = "https://api.reka.ai/v1"
    needs_auth = True
    api_key_env = "REKA_API_KEY"
    base_url_env = "REKA_BASE_URL"
    auth_header = "X-Api-Key"
    default_model = "reka-core"
    models = (
        "reka-core",
        "reka-core-20240501",
        "reka-flash",
        "reka-flash-3",
        "reka-edge",
        "reka-flash-research",
    )
