"""An in-process server speaking Raycast's AI chat format."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ._server import OpenAITestServer, Reply

__all__ = ["RaycastTestServer"]


def _event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class RaycastTestServer(OpenAITestServer):
    """A local stand-in for Raycast's backend: ``POST /api/v1/ai/chat_completions`` with
    ``{"author", "content": {"text"}}`` messages, answered by ``data: {"text": ...}``
    events and no terminator. Replies, faults and recording work as in
    ``OpenAITestServer``.

    Args:
        send_finish_reason: add ``finish_reason`` to the last event, as newer Raycast
            servers do.
    """

    api_root = "/api/v1"
    chat_path = "/ai/chat_completions"
    lead_events = 0

    def __init__(
        self,
        *,
        replies: Iterable[Reply | str] = (),
        default: Reply | None = None,
        api_key: str | None = None,
        send_finish_reason: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(replies=replies, default=default, api_key=api_key, host=host, port=port)
        self.send_finish_reason = send_finish_reason

    def _is_stream(self, body: Mapping[str, Any]) -> bool:
        return True

    def _last_user_text(self, body: Mapping[str, Any]) -> str | None:
        for message in reversed(body.get("messages") or []):
            if message.get("author") == "user":
                return str((message.get("content") or {}).get("text", ""))
        return None

    def render_events(self, body: Mapping[str, Any], reply: Reply) -> list[bytes]:
        """The events of a reply: one ``{"text": delta}`` per piece, no terminator."""
        pieces = self._pieces(body, reply)
        events = [_event({"text": piece}) for piece in pieces]
        if self.send_finish_reason:
            events.append(_event({"text": None, "finish_reason": reply.finish_reason}))
        return events
