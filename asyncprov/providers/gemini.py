"""Google's Gemini (the Generative Language API): requests mapped from OpenAI's shape,
``streamGenerateContent?alt=sse`` responses mapped back to OpenAI-shaped chunks."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from .._http import HttpCall
from .._types import (
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    FunctionCallDelta,
    ImagePart,
    TextPart,
    ToolCallDelta,
)
from ._mapping import (
    WireStream,
    append_turn,
    call_arguments,
    data_url,
    function_tools,
    stop_sequences,
)
from ._splice import TEXT_TAIL, one_string, text_chunk, text_head
from .base import Provider, json_event, validate_chunk_json

__all__ = ["Gemini"]

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "MALFORMED_FUNCTION_CALL": "stop",
    "OTHER": "stop",
}
_ids = itertools.count(1)
# Where a text part's string starts, as the API writes it (and written compactly).
_TEXT_PARTS = (b'"parts": [{"text": ', b'"parts":[{"text":')


def _parts(message: ChatMessage) -> list[dict[str, Any]]:
    content = message.content
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            parts.append({"text": content})
    else:
        for part in content or []:
            if isinstance(part, TextPart):
                parts.append({"text": part.text})
            elif isinstance(part, ImagePart):
                url = part.image_url.url
                inline = data_url(url)
                if inline is None:
                    parts.append({"fileData": {"mimeType": "image/*", "fileUri": url}})
                else:
                    parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
    parts.extend(
        {"functionCall": {"name": call.function.name, "args": call_arguments(call)}}
        for call in message.tool_calls or ()
    )
    return parts


def _map_request(request: ChatRequest) -> dict[str, Any]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the responses
    for message in request.messages:
        for call in message.tool_calls or []:
            names[call.id] = call.function.name
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        if message.role == "tool":
            name = names.get(message.tool_call_id or "", message.name or "tool")
            parts = [{"functionResponse": {"name": name, "response": {"result": message.text()}}}]
            role = "user"
        else:
            role = "model" if message.role == "assistant" else "user"
            parts = _parts(message)
        append_turn(contents, role, "parts", parts)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    config: dict[str, Any] = {}
    for option, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("max_tokens", "maxOutputTokens"),
    ):
        value = getattr(request, option)
        if value is not None:
            config[key] = value
    if request.stop is not None:
        config["stopSequences"] = stop_sequences(request)
    response_format = request.response_format or {}
    if response_format.get("type") == "json_object":
        config["responseMimeType"] = "application/json"
    elif response_format.get("type") == "json_schema":
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is not None:
            config["responseJsonSchema"] = schema
    if config:
        body["generationConfig"] = config
    if request.tools:
        declarations = [
            {"name": name, "description": description, "parameters": schema}
            for name, description, schema in function_tools(request)
        ]
        body["tools"] = [{"functionDeclarations": declarations}]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _map_tool_choice(request.tool_choice)}
    return body


def _map_tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]} if name else {"mode": "AUTO"}
    return {"mode": {"required": "ANY", "none": "NONE"}.get(choice, "AUTO")}


def _text_prefix(data: bytes) -> bytes:
    """The bytes up to and including the opening quote of the first candidate's text
    part, when the event opens with it; ``b""`` otherwise."""
    if data.startswith(b'{"candidates":'):
        for marker in _TEXT_PARTS:
            start = data.find(marker)
            if start >= 0 and data.find(b"}", 0, start) < 0:
                end = start + len(marker)
                return data[: end + 1] if data[end : end + 1] == b'"' else b""
    return b""


class _Stream(WireStream):
    """The OpenAI-shaped chunks of one Gemini stream, one per response event."""

    def __init__(self, name: str, model: str) -> None:
        super().__init__(name, model, f"gemini-{next(_ids)}")
        self.first = True
        self.calls = 0
        self.usage_metadata: dict[str, Any] | None = None
        """The last ``usageMetadata`` (each event carries the counts so far)."""
        self.usage_event: bytes | None = None
        """A later event with ``usageMetadata`` that took the fast way, parsed at the end."""
        self.prefix = b""
        """The bytes of the first event up to its text part's string, when it had one."""

    def event(self, data: bytes) -> ChatCompletionChunk:
        """The chunk of one event: ``ValueError`` when it is not a JSON object."""
        chunk = self.text_chunk(data)
        if chunk is None:
            self.fast.forget()
            chunk = self.process(json_event(data))
            self.prefix = self.prefix or _text_prefix(data)
        return chunk

    def text_chunk(self, data: bytes) -> ChatCompletionChunk | None:
        """The chunk of an event laid out like the first up to one text part's string, with
        nothing after it in the part and no finish reason: the string is spliced into the
        chunk's JSON (``None``: not that shape; take the long way)."""
        prefix = self.prefix
        if not prefix or not data.startswith(prefix):
            return None
        start = len(prefix) - 1  # the string's opening quote
        end = data.find(b'"}]', start + 1)
        if end <= start + 1:
            return None
        quoted = data[end - 1] == 0x5C or data.count(b'"', start, end + 1) != 2
        if quoted and not one_string(data, start, end):
            return None
        if data.find(b'"finishReason"', end) >= 0:
            return None
        if data.find(b'"usageMetadata"', end) >= 0:
            self.usage_event = data
        self.fast.learn(data, start + 1, end, self.text_head)
        return text_chunk(self.text_head, data[start + 1 : end], self.name)

    def process(self, parsed: dict[str, Any]) -> ChatCompletionChunk:
        if parsed.get("usageMetadata"):
            self.usage_metadata, self.usage_event = parsed["usageMetadata"], None
        self.id = parsed.get("responseId") or self.id
        self.model = parsed.get("modelVersion") or self.model
        self.text_head = text_head(self.id, self.created, self.model)
        candidates = parsed.get("candidates") or [{}]
        candidate = candidates[0]
        text, tool_calls = "", []
        for part in (candidate.get("content") or {}).get("parts", ()):
            if "text" in part and not part.get("thought"):
                text += part["text"]
            elif "functionCall" in part:
                call = part["functionCall"]
                arguments = json.dumps(call.get("args", {}))
                function = FunctionCallDelta(name=call.get("name", ""), arguments=arguments)
                call_id = f"call_{self.id}_{self.calls}"
                tool_calls.append(
                    ToolCallDelta(index=self.calls, id=call_id, type="function", function=function)
                )
                self.calls += 1
        delta: dict[str, Any] = {"content": text or None}
        if self.first:
            delta["role"] = "assistant"
        if tool_calls:
            delta["tool_calls"] = tool_calls
        self.first = False
        finish = None
        reason = candidate.get("finishReason")
        if reason:
            finish = "tool_calls" if self.calls else _FINISH.get(reason, "stop")
        return self.chunk(delta, finish)

    def final_usage(self) -> ChatCompletionChunk:
        if self.usage_event is not None:
            meta = json_event(self.usage_event).get("usageMetadata")
            self.usage_metadata = meta if isinstance(meta, dict) else self.usage_metadata
        meta = self.usage_metadata or {}
        prompt = meta.get("promptTokenCount", 0)
        output = meta.get("candidatesTokenCount", 0)
        return self.usage_chunk(prompt, output, meta.get("totalTokenCount"))


class Gemini(Provider):
    """Google's Gemini models; the key comes from ``api_key=``, ``GEMINI_API_KEY`` or
    ``GOOGLE_API_KEY`` (sent as ``x-goog-api-key``). Requests and replies keep OpenAI's
    shape: system messages become ``systemInstruction``, images ``inlineData`` parts,
    tools ``functionDeclarations``, ``functionCall`` parts OpenAI ``tool_calls``."""

    url = "https://ai.google.dev"
    base_url = "https://generativelanguage.googleapis.com"
    needs_auth = True
    supports_images = True
    api_key_env = "GEMINI_API_KEY"
    api_key_env_fallbacks = ("GOOGLE_API_KEY",)
    base_url_env = "GEMINI_BASE_URL"
    default_model = "gemini-2.0-flash"
    models: ClassVar[tuple[str, ...]] = (
        "gemini-2.0-flash",
        "gemini-2.0-flash-lite",
        "gemini-2.5-flash",
        "gemini-2.5-pro",
        "gemini-1.5-pro",
    )

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        key = self.require_api_key()
        model = self.resolve_model(request.model)
        headers = {"x-goog-api-key": key, "Accept": "text/event-stream", **self.headers}
        url = f"{self.base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse"
        state = _Stream(self.name, model)
        fast, name, validate, tail = state.fast, self.name, validate_chunk_json, TEXT_TAIL
        match, head = fast.match, fast.head  # taken again after each event the long way
        async with http.post(url, body=_map_request(request), headers=headers) as resp:
            # No terminator: a stream is whole once a candidate says why it finished.
            async for events in resp.events("a finishReason"):
                for event in events:
                    data = event.data
                    text = match(data)  # a text event laid out like the last?
                    if text is not None:  # spliced inline (see TextEvents)
                        try:
                            chunk = validate(head + text[1] + tail)
                        except ValueError:
                            pass  # the long way reports what is wrong with it
                        else:
                            chunk.__dict__["provider"] = name
                            yield chunk
                            continue
                    try:
                        chunk = state.event(data)
                    except ValueError as exc:
                        if not data.strip():
                            continue
                        raise resp.decode_error(data, expected="Gemini response") from exc
                    finally:
                        match, head = fast.match, fast.head
                    yield chunk
                    if chunk.choices[0].finish_reason is not None:
                        if request.include_usage and (state.usage_metadata or state.usage_event):
                            yield state.final_usage()
                        return
