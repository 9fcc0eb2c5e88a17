"""The OpenTelemetry GenAI semantic conventions' forms, without OpenTelemetry: a
provider's name and server, a request's attributes, and messages as JSON (recorded only
when content capture is on). Never a key or a proxy: URLs give their host and port."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from ._types import ChatCompletion, ChatRequest, ImagePart
from .providers.base import Provider

__all__ = [
    "Where",
    "input_messages",
    "output_messages",
    "request_attributes",
    "streamed_messages",
]

# The conventions' well-known provider names, by provider class; others use their own.
_SEMCONV_NAMES = {
    "OpenaiChat": "openai",
    "Anthropic": "anthropic",
    "Gemini": "gcp.gemini",
    "Groq": "groq",
    "DeepSeek": "deepseek",
    "Mistral": "mistral_ai",
    "XAI": "x_ai",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Where:
    """What the conventions say about one provider: its name and its server."""

    __slots__ = ("address", "name", "port")

    def __init__(self, provider: Provider) -> None:
        kind = next(
            (_SEMCONV_NAMES[c.__name__] for c in type(provider).__mro__ if c.__name__ in
             _SEMCONV_NAMES),
            type(provider).__name__.lower(),
        )  # fmt: skip
        self.name = kind
        url = urlsplit(provider.base_url or "")
        self.address = url.hostname  # never the userinfo part
        try:
            self.port = url.port or _DEFAULT_PORTS.get(url.scheme)
        except ValueError:
            self.port = None

    def attributes(self) -> dict[str, Any]:
        found: dict[str, Any] = {"gen_ai.provider.name": self.name}
        if self.address:
            found["server.address"] = self.address
            if self.port:
                found["server.port"] = self.port
        return found


def request_attributes(request: ChatRequest) -> dict[str, Any]:
    found: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": request.model}
    for name, value in (
        ("gen_ai.request.max_tokens", request.max_tokens),
        ("gen_ai.request.temperature", request.temperature),
        ("gen_ai.request.top_p", request.top_p),
        ("gen_ai.request.seed", request.seed),
        ("gen_ai.request.frequency_penalty", request.extra.get("frequency_penalty")),
        ("gen_ai.request.presence_penalty", request.extra.get("presence_penalty")),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[name] = value
    stop = request.stop
    if stop:
        found["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if request.stream:
        found["gen_ai.request.stream"] = True
    return found


def input_messages(request: ChatRequest) -> str:
    """The request's messages in the conventions' JSON form (images by reference only:
    a ``data:`` URL's bytes are left out)."""
    messages = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        content = message.content
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif content:
            for part in content:
                if isinstance(part, ImagePart):
                    url = part.image_url.url
                    if url.startswith("data:"):
                        mime = url[5:].split(";", 1)[0]
                        parts.append({"type": "blob", "modality": "image", "mime_type": mime})
                    else:
                        parts.append({"type": "uri", "modality": "image", "uri": url})
                else:
                    text = getattr(part, "text", None)
                    parts.append({"type": "text", "content": text} if text else {"type": part.type})
        for call in message.tool_calls or ():
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.id,
                    "name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
        if message.role == "tool":
            parts = [{"type": "tool_call_response", "id": message.tool_call_id,
                      "response": message.text()}]  # fmt: skip
        messages.append({"role": message.role, "parts": parts})
    return json.dumps(messages, ensure_ascii=False)


def output_messages(completion: ChatCompletion) -> str:
    messages = []
    for choice in completion.choices:
        message = choice.message
        parts: list[dict[str, Any]] = []
        if message.content:
            parts.append({"type": "text", "content": message.content})
        for call in message.tool_calls or ():
            parts.append({"type": "tool_call", "id": call.id, "name": call.function.name,
                          "arguments": call.function.arguments})  # fmt: skip
        messages.append(
            {"role": "assistant", "parts": parts, "finish_reason": choice.finish_reason or "error"}
        )
    return json.dumps(messages, ensure_ascii=False)


def streamed_messages(text: str, finish_reason: str | None) -> str:
    """A stream's reply (its first choice's text) as output messages."""
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish_reason or "error",
    }
    return json.dumps([message], ensure_ascii=False)
