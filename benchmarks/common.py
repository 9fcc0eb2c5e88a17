"""What the benchmark server sends, shared by the server and the correctness checks.

Nothing here imports a client library: the server, the worker and the orchestrator
all use it, and a worker's memory and import cost must only include its own client.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the directory holding the ``benchmarks`` package)."""

PACED_INTERVAL = 0.010
"""Seconds between two chunks of a ``paced-N`` stream (the first comes after one interval)."""

SHORT_PACED_INTERVAL = 0.002
"""The same for a ``shortpaced-N`` stream (whose first chunk comes with the headers): a
short reply whose tokens come 2 ms apart, so a client that buffers or wakes up once more
than it must shows it in its TTFT."""

MESSAGES = [{"role": "user", "content": "Say something."}]
"""The conversation every client sends."""

JSON_CONTENT = "Hello! This is a complete, non-streamed reply from the benchmark server."

STALL_PREFIX = "/stall"
"""A base URL path starting with this gets no answer at all (for the failover scenario)."""


def content_piece(index: int) -> str:
    """The text of content chunk ``index`` of a stream (distinct, so order is checked)."""
    return f"t{index} "


def expected_text(n: int) -> str:
    """The text a ``stream-N`` or ``paced-N`` stream adds up to."""
    return "".join(content_piece(i) for i in range(n))


def chunk_json(content: str | None, finish_reason: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` as the server sends it."""
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return json.dumps(chunk, separators=(",", ":")).encode()


def sse_events(n: int) -> list[bytes]:
    """The SSE events of an ``n``-content-chunk stream: n content chunks, one chunk with
    ``finish_reason: "stop"``, then ``data: [DONE]``."""
    events = [b"data: " + chunk_json(content_piece(i)) + b"\n\n" for i in range(n)]
    events.append(b"data: " + chunk_json(None, "stop") + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(n: int) -> list[bytes]:
    """The same ``n``-chunk stream in Anthropic's Messages API events."""

    def event(name: str, payload: dict[str, object]) -> bytes:
        return (
            f"event: {name}\ndata: ".encode()
            + json.dumps(payload, separators=(",", ":")).encode()
            + b"\n\n"
        )

    message = {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "m",
               "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip
    block = {"type": "text", "text": ""}
    events = [
        event("message_start", {"type": "message_start", "message": message}),
        event("content_block_start", {"type": "content_block_start", "content_block": block}),
    ]
    for i in range(n):
        delta = {"type": "text_delta", "text": content_piece(i)}
        events.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    events.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    usage = {"output_tokens": n}
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
    events.append(event("message_delta", end))
    events.append(event("message_stop", {"type": "message_stop"}))
    return events


def gemini_events(n: int) -> list[bytes]:
    """The same ``n``-chunk stream in Gemini's ``streamGenerateContent?alt=sse`` events."""

    def event(parts: list[dict[str, str]], **more: object) -> bytes:
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0, **more}
        body = {"candidates": [candidate], "modelVersion": "m", "responseId": "r"}
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\r\n\r\n"

    events = [event([{"text": content_piece(i)}]) for i in range(n)]
    events.append(event([], finishReason="STOP"))
    return events


def completion_json() -> bytes:
    """The body of the non-streamed ``json`` scenario."""
    body = {
        "id": "cmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": JSON_CONTENT},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 14, "total_tokens": 19},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def child_env() -> dict[str, str]:
    """Environment for child processes: the repo root importable, no ambient settings
    that would change what a client does (proxies, keys, base URLs)."""
    env = dict(os.environ)
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ASYNCPROV_PROXY",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        env.pop(name, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    paths = [str(ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


PYTHON = sys.executable
