"""An in-process server speaking Google's Generative Language API, for tests and demos."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from ._server import OpenAITestServer, Reply

__all__ = ["GeminiTestServer"]

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
_ids = itertools.count(1)


def _event(payload: Mapping[str, Any]) -> bytes:
    # As the API writes it: a space after each colon, none after commas.
    return b"data: " + json.dumps(payload, separators=(",", ": ")).encode() + b"\r\n\r\n"


class GeminiTestServer(OpenAITestServer):
    """A local stand-in for ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``:
    one ``data:`` event per piece of text (CRLF framed, as seen in the wild), tool calls
    as ``functionCall`` parts, the last event with ``finishReason`` and
    ``usageMetadata`` (no ``[DONE]``), and errors as ``{"error": {"code", "message",
    "status"}}``. Replies, faults and recording work as in ``OpenAITestServer``.
    """

    api_root = ""
    chat_path = "/v1beta/models/{model:[^/:]+}:streamGenerateContent"
    lead_events = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def error_body(self, error: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(error, str):
            error = {"message": error}
        return {"error": {"code": 400, "status": "INVALID_ARGUMENT", **error}}

    def _is_stream(self, body: Mapping[str, Any]) -> bool:
        return True  # asyncprov always streams the Generative Language API

    def _last_user_text(self, body: Mapping[str, Any]) -> str | None:
        for content in reversed(body.get("contents") or []):
            if content.get("role") == "user":
                texts = [p["text"] for p in content.get("parts", []) if "text" in p]
                if texts:
                    return " ".join(texts)
        return None

    def render_events(self, body: Mapping[str, Any], reply: Reply) -> list[bytes]:
        """The events of a reply, the one carrying ``finishReason`` last."""
        pieces = self._pieces(body, reply)
        usage = self._usage(body, len(pieces))
        response_id = f"gemini-resp-{next(_ids)}"
        model = "gemini-test"

        def event(parts: list[dict[str, Any]], **more: Any) -> bytes:
            candidate = {"content": {"role": "model", "parts": parts}, "index": 0, **more}
            return _event(
                {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
            )

        events = [event([{"text": piece}]) for piece in pieces[:-1] if piece]
        calls = [
            {"functionCall": {"name": c["name"], "args": json.loads(c["arguments"] or "{}")}}
            for c in reply.tool_calls or []
        ]
        last = ([{"text": pieces[-1]}] if pieces and pieces[-1] else []) + calls
        finish = _FINISH.get(reply.finish_reason, "STOP")
        meta = {
            "promptTokenCount": usage["prompt_tokens"],
            "candidatesTokenCount": usage["completion_tokens"],
            "totalTokenCount": usage["total_tokens"],
        }
        final = json.loads(event(last, finishReason=finish)[6:])
        final["usageMetadata"] = meta
        events.append(_event(final))
        return events
