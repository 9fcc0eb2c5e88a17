"""The faults the test servers inject, once the reply has started: in a stream, after
``fault_after`` content chunks; in a JSON body, part-way through it."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ._server import Reply

__all__ = ["BODY_FAULTS", "faulty_body", "inject", "sse"]

BODY_FAULTS = frozenset({"truncate", "stall", "keepalive", "trickle"})
"""The faults a non-streamed (JSON) reply takes."""


def sse(payload: Any) -> bytes:
    """One ``data:`` event of JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def faulty_body(request: web.Request, payload: bytes, reply: Reply) -> web.StreamResponse:
    """A JSON reply that fails part-way through its body."""
    pause = reply.chunk_delay or 0.01
    if reply.fault == "truncate":
        # Close-delimited (no length, not chunked), as an HTTP/1.0-style server or a
        # proxy sends it: only the JSON itself can show the body was cut.
        assert request.transport is not None
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        request.transport.write(head + payload[: len(payload) // 2])
        await asyncio.sleep(0.05)
        request.transport.close()
        return web.Response()
    response = web.StreamResponse(headers={"Content-Type": "application/json", **reply.headers})
    await response.prepare(request)
    if reply.fault == "stall":
        await response.write(payload[: len(payload) // 2])
        await asyncio.sleep(3600)
    elif reply.fault == "keepalive":
        while True:
            await response.write(b"\n")
            await asyncio.sleep(pause)
    elif reply.fault == "trickle":
        for byte in payload:
            await response.write(bytes([byte]))
            await asyncio.sleep(pause)
    await response.write_eof()
    return response


async def inject(
    request: web.Request, response: web.StreamResponse, reply: Reply
) -> web.StreamResponse:
    """A stream's fault, from where it starts (see ``Fault``)."""
    fault = reply.fault
    pause = reply.chunk_delay or 0.01
    if fault == "truncate":
        # Let what was written reach the client before the cut: aiohttp drops bytes
        # that arrive together with a broken body.
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return response
    if fault == "stall":
        await asyncio.sleep(3600)
    if fault == "keepalive":
        while True:
            await response.write(b": keepalive\n\n")
            await asyncio.sleep(pause)
    if fault == "trickle":
        event = sse({"choices": [{"index": 0, "delta": {"content": "slow"}}]})
        for byte in itertools.cycle(event):
            await response.write(bytes([byte]))
            await asyncio.sleep(pause)
    if fault == "error_event":
        await response.write(
            sse({"error": {"message": "overloaded", "type": "server_error", "code": 503}})
        )
    elif fault == "event_error":
        await response.write(
            b'event: error\ndata: {"error": {"message": "boom", "type": "server_error"}}\n\n'
        )
    elif fault == "malformed":
        await response.write(b'data: {"choices": [{"delta": \n\n')
    await response.write_eof()
    return response
