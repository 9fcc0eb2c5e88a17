"""What every non-OpenAI wire format maps the same way from OpenAI's request shape:
image URLs, a tool call's arguments, stop sequences, function tools and merged turns."""

from __future__ import annotations

import json
from typing import Any

from .._types import ChatRequest, ToolCall

__all__ = ["append_turn", "call_arguments", "data_url", "function_tools", "stop_sequences"]


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
