"""The OpenAI Chat Completions wire format, shared by every OpenAI-shaped host.

Hosts that speak it (OpenAI, Reka, Groq, vLLM, Ollama, ...) are configuration on top of
``OpenAIWire``: a base URL, an auth header and a model list.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from .._errors import APIError, ConfigurationError, ProviderError
from .._http import HttpCall
from .._response import HttpResponse
from .._types import ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest
from .base import Provider, validate_chunk_json

__all__ = ["OpenAIWire"]

_DONE = b"[DONE]"
_OPTIONS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
)


_MESSAGES: TypeAdapter[list[ChatMessage]] = TypeAdapter(list[ChatMessage])
_dump_messages = _MESSAGES.serializer.to_python  # without the adapter's per-call wrapper

# Built once when this (lazily imported) module loads, as base's chunk validator is.
ChatCompletion.model_rebuild()
_validate_completion: Callable[[bytes], ChatCompletion] = (
    ChatCompletion.__pydantic_validator__.validate_json
)


def _map_request(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": _dump_messages(request.messages, exclude_none=True),
        "stream": stream,
    }
    if stream and request.include_usage:
        body["stream_options"] = {"include_usage": True}
    fields = request.__dict__  # the validated values: a look-up, not getattr
    for option in _OPTIONS:
        value = fields[option]
        if value is not None:
            body[option] = value
    body.update(request.extra)
    return body


def _event_error(payload: bytes, response: HttpResponse, *, provider: str, model: str) -> APIError:
    """The error an ``event: error`` frame reports (JSON or plain text)."""
    if payload.lstrip().startswith(b"{"):
        return response.decode_error(payload)
    text = payload.decode("utf-8", "replace").strip()
    return ProviderError(text or "the provider sent an error event", provider=provider, model=model)


class OpenAIWire(Provider):
    """A provider speaking OpenAI's Chat Completions format (configure, don't subclass
    with logic)."""

    supports_images = True
    auth_header: ClassVar[str] = "Authorization"
    """Header carrying the key; ``Authorization`` gets a ``Bearer`` prefix."""

    def _request_parts(
        self, request: ChatRequest, *, stream: bool
    ) -> tuple[str, dict[str, Any], dict[str, str], str]:
        if not self.base_url:
            raise ConfigurationError(f"{self.name} needs base_url=...")
        headers: dict[str, str] = {}
        if not self.headers or not any(
            name.lower() == self.auth_header.lower() for name in self.headers
        ):
            key = self.require_api_key() if self.needs_auth else self.get_api_key()
            if key is not None:
                headers[self.auth_header] = (
                    f"Bearer {key}" if self.auth_header == "Authorization" else key
                )
        headers.update(self.headers)  # the instance's and the call's headers win
        if stream:
            headers["Accept"] = "text/event-stream"
        model = self.resolve_model(request.model)
        url = f"{self.base_url}/chat/completions"
        return url, _map_request(request, model, stream=stream), headers, model

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        url, body, headers, model = self._request_parts(request, stream=True)
        name = self.name
        validate = validate_chunk_json
        async with http.post(url, body=body, headers=headers) as resp:
            async for events in resp.events("[DONE]"):
                for event in events:
                    payload = event.data
                    if payload == _DONE:
                        return
                    kind = event.event
                    if kind != "message" or not payload:
                        if kind == "error":
                            raise _event_error(payload, resp, provider=name, model=model)
                        continue  # empty events and named events (pings) carry nothing
                    try:
                        chunk = validate(payload)
                    except ValidationError as exc:
                        if not payload.strip():
                            continue  # `data: ` with only whitespace
                        raise resp.decode_error(payload, expected="chunk JSON") from exc
                    # Straight into the instance dict: pydantic's __setattr__ costs more
                    # than the rest of this loop, and `provider` needs no validation.
                    chunk.__dict__["provider"] = name
                    yield chunk

    async def complete(self, request: ChatRequest, http: HttpCall) -> ChatCompletion:
        url, body, headers, _ = self._request_parts(request, stream=False)
        async with http.post(url, body=body, headers=headers, stream=False) as resp:
            completion = await resp.parse(_validate_completion)
        completion.__dict__["provider"] = self.name  # see stream(): no validation needed
        return completion
