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
