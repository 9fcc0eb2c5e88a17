"""The gateway's connections, bounded against slow and hostile clients.

aiohttp's own keep-alive timer bounds a connection that is idle or still sending its
headers (it starts when the connection opens and again after each response); the body
gets its own bound in the handler (``ConnectionLimits.body_timeout``). On top of aiohttp's
request handler this adds a cap on open connections and error answers to malformed or
oversized requests that echo nothing the client sent (a header can hold a key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["ConnectionLimits", "GatewaySite"]

log = logging.getLogger("asyncprov.server")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how many: each default is no longer than nginx's.

    Attributes:
        idle_timeout: seconds a connection may sit idle, or take to send a request's
            headers (nginx: client_header_timeout 60 s, keepalive_timeout 75 s).
        body_timeout: seconds a request may take to send its whole body (nginx:
            client_body_timeout 60 s, between reads); 408 past it.
        send_timeout: seconds a client may leave an answer unread (nothing of what is
            queued for it goes out) before the connection is closed and its upstream
            request cancelled (nginx: send_timeout 60 s).
        max_connections: connections open at once; one more is answered 503 and closed.
    """

    idle_timeout: float = 60.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    max_connections: int = 1024


def _json(status: int, message: str, kind: str) -> bytes:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})
    phrase = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body.encode()


class _Handler(RequestHandler):
    """aiohttp's request handler, with a connection cap and quiet, echo-free answers to
    requests it cannot parse."""

    def __init__(self, manager: web.Server, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._refused = False
        self._stuck_since: float | None = None
        self._queued = 0
        self._send_check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        assert isinstance(transport, asyncio.Transport)
        if manager is not None and len(manager.connections) > self._limits.max_connections:
            _refusals.note(self._limits.max_connections)
            # Answer, read and drop what the client is still sending for a moment, then
            # close: closing at once would reset the connection under the answer.
            self._refused = True
            transport.write(_json(503, "too many connections; try again", "server_error"))
            self._loop.call_later(1.0, transport.close)
            return
        self._schedule_send_check()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._send_check is not None:
            self._send_check.cancel()
        super().connection_lost(exc)

    def _schedule_send_check(self) -> None:
        every = min(1.0, self._limits.send_timeout / 4)
        self._send_check = self._loop.call_later(every, self._check_send)

    def _check_send(self) -> None:
        """Close a connection whose client has stopped reading what it was sent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        queued = (
            transport.get_write_buffer_size() if isinstance(transport, asyncio.Transport) else 0
        )
        now = self._loop.time()
        if queued == 0 or queued < self._queued:
            self._stuck_since = None  # drained, or draining: the client reads
        elif self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= self._limits.send_timeout:
            log.info("closed a connection whose client stopped reading its answer")
            self.force_close()
            transport.abort()  # connection_lost cancels the handler (and the upstream call)
            return
        self._queued = queued
        self._schedule_send_check()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or exc is None:
            return super().handle_error(request, status, exc, message)
        # A request aiohttp could not parse: say what kind, never what it held (an
        # oversized Authorization header is a client's key), and log no traceback.
        if isinstance(exc, LineTooLong):
            status, text = 431, "request header fields too large"
        else:
            text = "malformed HTTP request"
        log.info("refused a request from %s: %s (%s)", request.remote, text, type(exc).__name__)
        response = web.json_response(
            {"error": {"message": text, "type": "invalid_request_error", "param": None}},
            status=status,
        )
        response.force_close()
        return response


class _Refusals:
    """Logs refused connections without flooding: the first, then one line a minute."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = -math.inf

    def note(self, cap: int) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= 60:
            log.warning("refusing connections: %d open already (%d refused)", cap, self.count)
            self.logged_at = now


_refusals = _Refusals()


class GatewaySite(web.TCPSite):
    """A TCP site whose connections are ``_Handler``s, under ``ConnectionLimits``."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        limits: ConnectionLimits,
        sock: socket.socket | None = None,
    ):
        super().__init__(runner, host, port)
        self._limits = limits
        self._sock = sock  # already listening (shared by the workers of one port)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite's own start is below
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        kwargs = server._kwargs  # the runner's handler settings (keepalive_timeout, ...)

        def factory() -> _Handler:
            return _Handler(server, loop=loop, limits=self._limits, **kwargs)

        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog, reuse_address=True
            )
