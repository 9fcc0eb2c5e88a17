"""An in-process server speaking Anthropic's Messages API, for tests and demos."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from ._server import OpenAITestServer, Reply, split_text

__all__ = ["AnthropicTestServer"]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_ids = itertools.count(1)


def _event(name: str, payload: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class AnthropicTestServer(OpenAITestServer):
    """A local stand-in for ``POST /v1/messages``: the named SSE events of Anthropic's
    stream (``message_start``, ``content_block_*``, ``ping``, ``message_delta``,
    ``message_stop``), tool calls as ``tool_use`` blocks streamed as
    ``input_json_delta``, and errors as ``{"type": "error", "error": {...}}`` (e.g.
    ``Reply(status=529, error={"type": "overloaded_error", "message": "Overloaded"})``).
    Replies, faults and recording work as in ``OpenAITestServer``; ``fault_after``
    counts content deltas.
    """

    api_root = ""
    chat_path = "/v1/messages"
    lead_events = 3  # message_start, content_block_start, ping

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def error_body(self, error: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(error, str):
            error = {"type": "api_error", "message": error}
        return {"type": "error", "error": error}

    def _is_stream(self, body: Mapping[str, Any]) -> bool:
        return True  # asyncprov always streams the Messages API

    def render_events(self, body: Mapping[str, Any], reply: Reply) -> list[bytes]:
        """The events of a reply, ``message_stop`` last."""
        pieces = self._pieces(body, reply)
        usage = self._usage(body, len(pieces))
        message = {
            "id": f"msg_{next(_ids)}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body.get("model", ""),
            "stop_reason": None,
            "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": 1},
        }
        events = [
            _event("message_start", {"type": "message_start", "message": message}),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _event("ping", {"type": "ping"}),
        ]
        for piece in pieces:
            delta = {"type": "text_delta", "text": piece}
            events.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        for number, call in enumerate(reply.tool_calls or [], start=1):
            block = {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}
            events.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": number, "content_block": block},
                )
            )
            for part in split_text(call["arguments"], None):
                delta = {"type": "input_json_delta", "partial_json": part}
                events.append(
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": number, "delta": delta},
                    )
                )
            events.append(
                _event("content_block_stop", {"type": "content_block_stop", "index": number})
            )
        stop = (
            "tool_use" if reply.tool_calls else _STOP.get(reply.finish_reason, reply.finish_reason)
        )
        events.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["completion_tokens"]},
                },
            )
        )
        events.append(_event("message_stop", {"type": "message_stop"}))
        return events
