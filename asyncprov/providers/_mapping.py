"""What every non-OpenAI wire format maps the same way from OpenAI's request shape
(image URLs, a tool call's arguments, stop sequences, function tools and merged turns)
and back to OpenAI's chunks (`WireStream`)."""

from __future__ import annotations

import json
import time
from typing import Any

from .._types import ChatCompletionChunk, ChatRequest, ToolCall, Usage
from ._splice import TextEvents
from .base import chunk_from

__all__ = [
    "WireStream",
    "append_turn",
    "call_arguments",
    "data_url",
    "function_tools",
    "stop_sequences",
]


def data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:`` URL; ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    return head.removeprefix("data:").split(";", 1)[0], data


def call_arguments(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON arguments as an object (``{}`` when they are not one)."""
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except ValueError:
        return {}
    return arguments if isinstance(arguments, dict) else {}


def stop_sequences(request: ChatRequest) -> list[str] | None:
    stop = request.stop
    return [stop] if isinstance(stop, str) else stop


def function_tools(request: ChatRequest) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, description, JSON schema of the parameters)`` of each function tool."""
    return [
        (
            tool["function"]["name"],
            tool["function"].get("description", ""),
            tool["function"].get("parameters") or {"type": "object"},
        )
        for tool in request.tools or ()
        if tool.get("type", "function") == "function" and "function" in tool
    ]


def append_turn(turns: list[dict[str, Any]], role: str, key: str, blocks: list[Any]) -> None:
    """Add a turn, merged into the last one when it has the same role (both APIs want
    the roles to alternate)."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(blocks)
    else:
        turns.append({"role": role, key: blocks})


class WireStream:
    """The state every stream of a wire format of its own keeps to give OpenAI-shaped
    chunks: the reply's id, model and creation time, and its text events' layout."""

    def __init__(self, name: str, model: str, id: str = "") -> None:
        self.name = name
        self.model = model
        self.id = id
        self.created = int(time.time())
        self.text_head = b""
        """A text chunk's JSON up to its content (`_splice.text_head`), once known."""
        self.fast = TextEvents()

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        fields = {"id": self.id, "created": self.created, "model": self.model}
        return chunk_from({**fields, "choices": [choice]}, self.name)

    def usage_chunk(
        self, prompt: int, completion: int, total: int | None = None
    ) -> ChatCompletionChunk:
        """The last chunk of a stream asked for its usage (no choices)."""
        fields = {"id": self.id, "created": self.created, "model": self.model, "choices": []}
        chunk = chunk_from(fields, self.name)
        total = prompt + completion if total is None else total
        chunk.usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)
        return chunk
