"""Anthropic's Messages API: requests mapped from OpenAI's shape, stream events mapped
back to OpenAI-shaped chunks (text, tool calls, finish reasons, usage)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from .._errors import ProviderError
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
from ._splice import TEXT_TAIL, one_string, text_head
from .base import Provider, json_event, validate_chunk_json

__all__ = ["Anthropic"]

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""Sent when a request gives no ``max_tokens`` (the Messages API requires one)."""

_FINISH = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop",
}  # fmt: skip
# OpenAI body fields the Messages API has no place for (it refuses unknown fields).
_OPENAI_ONLY = frozenset(
    {
        "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
        "logit_bias", "parallel_tool_calls", "store", "service_tier", "reasoning_effort",
        "metadata", "user", "max_completion_tokens", "stream_options", "seed",
        "response_format",
    }
)  # fmt: skip


_TEXT_DELTA = b'"delta":{"type":"text_delta","text":'


def _image_block(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    source = {"type": "base64", "media_type": inline[0], "data": inline[1]}
    return {"type": "image", "source": source}


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    else:
        blocks = []
        for part in content or []:
            if isinstance(part, TextPart):
                blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                blocks.append(_image_block(part.image_url.url))
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.function.name, "input": call_arguments(c)}
        for c in message.tool_calls or ()
    ]
    return blocks


def _map_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """(the system text, the turns), with consecutive turns of one role merged."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            system.append(message.text())
            continue
        if message.role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
            role, blocks = "user", [{**result, "content": message.text()}]
        else:
            role = "assistant" if message.role == "assistant" else "user"
            blocks = _blocks(message)
        append_turn(turns, role, "content", blocks)
    return "\n\n".join(t for t in system if t), turns


def _map_tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"type": "tool", "name": name} if name else {"type": "auto"}
    return {"type": {"required": "any", "none": "none"}.get(choice, "auto")}


def _json_tool(request: ChatRequest) -> tuple[str, dict[str, Any]] | None:
    """(name, schema) of the tool standing for a ``json_schema`` response format."""
    response_format = request.response_format or {}
    if response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    return str(spec.get("name") or "respond"), spec.get("schema") or {"type": "object"}


def _map_request(request: ChatRequest, model: str) -> dict[str, Any]:
    system, turns = _map_messages(request.messages)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": turns,
        "stream": True,
    }
    if system:
        body["system"] = system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop_sequences"] = stop_sequences(request)
    if request.tools:
        body["tools"] = [
            {"name": name, "description": description, "input_schema": schema}
            for name, description, schema in function_tools(request)
        ]
    if request.tool_choice is not None:
        body["tool_choice"] = _map_tool_choice(request.tool_choice)
    json_tool = _json_tool(request)
    if json_tool is not None:  # structured output: a tool the model must call
        name, schema = json_tool
        description = "Give the answer as this tool's input."
        body.setdefault("tools", []).append(
            {"name": name, "description": description, "input_schema": schema}
        )
        body["tool_choice"] = {"type": "tool", "name": name}
    user = request.extra.get("user")
    if isinstance(user, str):
        body["metadata"] = {"user_id": user}
    body.update({k: v for k, v in request.extra.items() if k not in _OPENAI_ONLY})
    return body


class _Stream(WireStream):
    """The OpenAI-shaped chunks of one Messages API stream."""

    def __init__(
        self, name: str, model: str, include_usage: bool, json_tool: str | None = None
    ) -> None:
        super().__init__(name, model)
        self.json_tool = json_tool
        """The tool standing for structured output: its input is the reply's content."""
        self.json_blocks: set[int] = set()
        self.include_usage = include_usage
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.usage = (0, 0)  # input and output tokens

    def learn(self, data: bytes) -> None:
        """Learn the layout of a ``text_delta`` event when it is compact JSON."""
        start, end = data.find(_TEXT_DELTA) + len(_TEXT_DELTA), len(data) - 3
        if start < len(_TEXT_DELTA) or not data.endswith(b'"}}') or data[start] != 0x22:
            return self.fast.forget()
        if not self.text_head or not one_string(data, start, end):
            return self.fast.forget()
        return self.fast.learn(data, start + 1, end, self.text_head)

    def process(self, event: dict[str, Any]) -> ChatCompletionChunk | None:
        kind = event.get("type")
        index = event.get("index", 0)
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            kind = delta.get("type")
            if kind == "text_delta":
                return self.chunk({"content": delta.get("text", "")})
            if kind == "input_json_delta" and index in self.json_blocks:
                return self.chunk({"content": delta.get("partial_json", "")})
            if kind == "input_json_delta" and index in self.tools:
                arguments = FunctionCallDelta(arguments=delta.get("partial_json", ""))
                call = ToolCallDelta(index=self.tools[index], function=arguments)
                return self.chunk({"tool_calls": [call]})
            if kind == "thinking_delta":
                return self.chunk({"reasoning_content": delta.get("thinking", "")})
            return None
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id", "")
            self.model = message.get("model") or self.model
            self.usage = ((message.get("usage") or {}).get("input_tokens", 0), self.usage[1])
            self.text_head = text_head(self.id, self.created, self.model)
            return self.chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use" and block.get("name") == self.json_tool:
                self.json_blocks.add(index)
                return None
            if block.get("type") == "tool_use":
                number = self.tools[index] = len(self.tools)
                function = FunctionCallDelta(name=block.get("name", ""), arguments="")
                call = ToolCallDelta(
                    index=number, id=block.get("id"), type="function", function=function
                )
                return self.chunk({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self.chunk({"content": block["text"]})
            return None
        if kind == "message_delta":
            output = (event.get("usage") or {}).get("output_tokens")
            if output is not None:
                self.usage = (self.usage[0], output)
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason == "tool_use" and self.json_blocks and not self.tools:
                reason = "end_turn"  # the structured reply was the answer
            if reason:
                return self.chunk({}, _FINISH.get(reason, reason))
        return None


class Anthropic(Provider):
    """Anthropic's Claude models over the Messages API; the key comes from ``api_key=``
    or ``ANTHROPIC_API_KEY``. Requests and replies keep OpenAI's shape: system
    messages become ``system``, images image blocks, tools ``tools``/``tool_choice``,
    streamed ``tool_use`` blocks OpenAI ``tool_calls``; ``max_tokens`` defaults to
    4,096 (the API requires one)."""

    url = "https://www.anthropic.com"
    base_url = "https://api.anthropic.com"
    needs_auth = True
    supports_images = True
    api_key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_model = "claude-3-5-haiku-latest"
    models: ClassVar[tuple[str, ...]] = (
        "claude-3-5-haiku-latest",
        "claude-3-5-sonnet-latest",
        "claude-3-7-sonnet-latest",
        "claude-sonnet-4-0",
        "claude-opus-4-0",
    )

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        key = self.require_api_key()
        model = self.resolve_model(request.model)
        headers = {"x-api-key": key, "anthropic-version": API_VERSION, **self.headers}
        headers.setdefault("Accept", "text/event-stream")
        json_tool = _json_tool(request)
        state = _Stream(
            self.name, model, request.include_usage, json_tool[0] if json_tool else None
        )
        url = f"{self.base_url}/v1/messages"
        fast, name, validate, tail = state.fast, self.name, validate_chunk_json, TEXT_TAIL
        match, head = fast.match, fast.head  # taken again after each event the long way
        async with http.post(url, body=_map_request(request, model), headers=headers) as resp:
            async for events in resp.events("message_stop"):
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
                    if not data.strip():
                        continue
                    try:
                        parsed = json_event(data)
                    except ValueError as exc:
                        raise resp.decode_error(data, expected="Anthropic event") from exc
                    kind = parsed.get("type")
                    if kind == "message_stop":
                        if state.include_usage:
                            yield state.usage_chunk(*state.usage)
                        return
                    if kind == "error":
                        error = parsed.get("error") or {}
                        message = error.get("message") or "the provider sent an error event"
                        raise ProviderError(
                            message, provider=name, model=model, error_type=error.get("type")
                        )
                    slow = state.process(parsed)
                    if slow is not None:
                        yield slow
                        if kind == "content_block_delta":
                            state.learn(data)
                            match, head = fast.match, fast.head
