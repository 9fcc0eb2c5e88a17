"""An in-process OpenAI-compatible server with scripted replies and injectable faults."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

import anyio
from aiohttp import web
from anyio.from_thread import start_blocking_portal

from ._faults import BODY_FAULTS, faulty_body, inject, sse

__all__ = ["Fault", "OpenAITestServer", "RecordedRequest", "Reply"]

Fault = Literal[
    # Streams fail after `fault_after` content chunks; a non-streamed (JSON) reply fails
    # part-way through its body for truncate, stall, keepalive and trickle.
    "truncate",  # close the connection mid-body (JSON: a close-delimited body cut short)
    "no_done",  # end the body cleanly without `data: [DONE]`
    "stall",  # stop sending, keep the connection open
    "keepalive",  # send only `: keepalive` comments (JSON: newlines), forever
    "trickle",  # send the next event (JSON: the body) one byte at a time
    "error_event",  # `data: {"error": ...}` after `fault_after` chunks
    "event_error",  # an `event: error` frame after `fault_after` chunks
    "malformed",  # an event whose JSON is broken after `fault_after` chunks
    "wrong_type",  # a 200 with an HTML body instead of SSE / JSON
    "reset",  # close the connection before sending headers
]


@dataclass
class Reply:
    """One scripted answer of the test server.

    Attributes:
        content: the reply text; ``None`` echoes the last user message.
        chunks: split the text into this many stream chunks (default: one per word).
        tool_calls: ``[{"id", "name", "arguments"}]``, streamed in fragments.
        status: HTTP status; with 400 or above the body is ``error`` (OpenAI style).
        headers: extra response headers (e.g. ``{"Retry-After": "2"}``).
        delay: seconds before the response headers.
        chunk_delay: seconds between stream chunks.
        fault: a failure to inject (see ``Fault``), after ``fault_after`` chunks.
        raw: a body sent exactly as given, with ``content_type`` and ``status``.
    """

    content: str | None = None
    chunks: int | None = None
    tool_calls: list[dict[str, str]] | None = None
    finish_reason: str = "stop"
    status: int = 200
    error: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    fault: Fault | None = None
    fault_after: int = 0
    raw: bytes | None = None
    """Send exactly this body (with ``content_type`` and ``status``) instead."""
    content_type: str = "application/json"


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    json: Any
    query: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0
    """When it arrived, on the monotonic clock (``time.monotonic()``)."""


_WORDS = re.compile(r"\S+\s*|\s+")


def split_text(text: str, chunks: int | None) -> list[str]:
    """``text`` cut into ``chunks`` nearly equal pieces, or into words."""
    if chunks is None:
        return _WORDS.findall(text) or [""]
    size, extra = divmod(len(text), chunks)
    pieces, start = [], 0
    for index in range(chunks):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


class OpenAITestServer:
    """A local server speaking OpenAI's Chat Completions format, for tests and demos.

    Replies are taken from a queue (``replies=`` or ``add_reply``); when it is empty
    the ``default`` reply is used, which echoes the last user message.

    Example:
        >>> async with OpenAITestServer(replies=["Hello there!"]) as server:
        ...     async with AsyncClient(base_url=server.base_url) as client:
        ...         ...
    """

    api_root: ClassVar[str] = "/v1"
    chat_path: ClassVar[str] = "/chat/completions"
    lead_events: ClassVar[int] = 1
    """Events before the first content (the role chunk); ``fault_after`` counts after them."""

    def __init__(
        self,
        *,
        replies: Iterable[Reply | str] = (),
        default: Reply | None = None,
        api_key: str | None = None,
        models: Iterable[str] = ("test-model",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._replies: deque[Reply] = deque()
        self.add_reply(*replies)
        self.default = default or Reply()
        self.api_key = api_key
        self.models = tuple(models)
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.in_flight = 0
        """Chat requests being answered now."""
        self.max_in_flight = 0
        """The most chat requests answered at once since the server started."""
        self._disconnected: anyio.Event | None = None
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)

    def add_reply(self, *replies: Reply | str) -> None:
        """Queue replies, used in order by the next requests."""
        self._replies.extend(Reply(content=r) if isinstance(r, str) else r for r in replies)

    @property
    def base_url(self) -> str:
        """The API root to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._host}:{self._port}{self.api_root}"

    async def wait_for_disconnect(self) -> None:
        """Return once a client has dropped a connection mid-response."""
        assert self._disconnected is not None, "the server is not running"
        await self._disconnected.wait()

    async def start(self) -> None:
        """Start listening."""
        app = web.Application()
        app.router.add_post(self.api_root + self.chat_path, self._chat)
        app.router.add_get(self.api_root + "/models", self._models)
        self._disconnected = anyio.Event()
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and end every open response."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[Self]:
        """Run the server on its own event loop in a thread (for sync code)."""
        with start_blocking_portal(name="asyncprov-test-server") as portal:
            portal.call(self.start)
            try:
                yield self
            finally:
                portal.call(self.stop)

    # --- handlers ------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    def _error(self, status: int, message: str, kind: str) -> web.Response:
        return web.json_response(self.error_body({"message": message, "type": kind}), status=status)

    def error_body(self, error: dict[str, Any] | str) -> dict[str, Any]:
        """The JSON body of an error answer, in this server's format."""
        return {"error": error}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "the body is not JSON", "invalid_request_error")
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.headers),
                body,
                query=dict(request.query),
                at=time.monotonic(),
            )
        )
        if self.api_key is not None and self.api_key not in (
            request.headers.get("Authorization", "").removeprefix("Bearer "),
            request.headers.get("X-Api-Key"),
            request.headers.get("X-Goog-Api-Key"),
        ):
            return self._error(401, "invalid API key", "authentication_error")
        reply = self._replies.popleft() if self._replies else self.default
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.fault == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if reply.raw is not None:
                return web.Response(
                    body=reply.raw,
                    status=reply.status,
                    content_type=reply.content_type,
                    headers=reply.headers,
                )
            if reply.status >= 400:
                error = reply.error or {"message": f"scripted {reply.status}", "type": "error"}
                return web.json_response(
                    self.error_body(error), status=reply.status, headers=reply.headers
                )
            if reply.fault == "wrong_type":
                return web.Response(
                    text="<html>maintenance</html>", content_type="text/html", headers=reply.headers
                )
            if not self._is_stream(body):
                if reply.fault in BODY_FAULTS:
                    payload = json.dumps(self._completion(body, reply)).encode()
                    return await faulty_body(request, payload, reply)
                return web.json_response(self._completion(body, reply), headers=reply.headers)
            return await self._stream(request, body, reply)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            if self._disconnected is not None:
                self._disconnected.set()
            raise

    def _is_stream(self, body: Mapping[str, Any]) -> bool:
        return bool(body.get("stream"))

    def _last_user_text(self, body: Mapping[str, Any]) -> str | None:
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
                return str(content)
        return None

    def _content(self, body: Mapping[str, Any], reply: Reply) -> str:
        if reply.content is not None:
            return reply.content
        text = self._last_user_text(body)
        return "Hello from the asyncprov test server." if text is None else f"You said: {text}"

    def _usage(self, body: Mapping[str, Any], pieces: int) -> dict[str, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": pieces,
            "total_tokens": prompt + pieces,
        }

    def _pieces(self, body: Mapping[str, Any], reply: Reply) -> list[str]:
        if reply.tool_calls and reply.content is None:
            return []
        return split_text(self._content(body, reply), reply.chunks)

    def _completion(self, body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
        pieces = self._pieces(body, reply)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
        if reply.tool_calls:
            message["content"] = reply.content
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": self._usage(body, len(pieces)),
        }

    def render_events(self, body: Mapping[str, Any], reply: Reply) -> list[bytes]:
        """The SSE events of a streamed reply, terminator included."""
        base = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", ""),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse({**base, "choices": [choice]})

        events = [chunk({"role": "assistant", "content": ""})]
        pieces = self._pieces(body, reply)
        events += [chunk({"content": piece}) for piece in pieces]
        for index, call in enumerate(reply.tool_calls or []):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            events.append(chunk({"tool_calls": [head]}))
            for part in split_text(call["arguments"], None):
                events.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                )
        events.append(chunk({}, reply.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(sse({**base, "choices": [], "usage": self._usage(body, len(pieces))}))
        events.append(b"data: [DONE]\n\n")
        return events

    async def _stream(
        self, request: web.Request, body: Mapping[str, Any], reply: Reply
    ) -> web.StreamResponse:
        events = self.render_events(body, reply)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **reply.headers,
            }
        )
        await response.prepare(request)
        fault, after = reply.fault, reply.fault_after
        if fault is None and not reply.chunk_delay:
            await response.write(b"".join(events))
            await response.write_eof()
            return response
        for index, event in enumerate(events):
            if fault is not None and index == after + self.lead_events:
                return await inject(request, response, reply)
            if fault == "no_done" and index == len(events) - 1:  # the terminator
                break
            await response.write(event)
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
        await response.write_eof()
        return response
