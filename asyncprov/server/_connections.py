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
        max_connections: connections open at once; one more is answered 503 and closed.
    """

    idle_timeout: float = 60.0
    body_timeout: float = 60.0
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

    def __init__(self, manager: web.Server, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._max_connections = max_connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        manager = self._manager
        if manager is not None and len(manager.connections) > self._max_connections:
            log.warning("refused a connection: %d open already", self._max_connections)
            assert isinstance(transport, asyncio.Transport)
            transport.write(_json(503, "too many connections; try again", "server_error"))
            self.force_close()
            transport.close()

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


class GatewaySite(web.TCPSite):
    """A TCP site whose connections are ``_Handler``s with a connection cap."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, max_connections: int):
        super().__init__(runner, host, port)
        self._max_connections = max_connections

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite's own start is below
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        kwargs = server._kwargs  # the runner's handler settings (keepalive_timeout, ...)

        def factory() -> _Handler:
            return _Handler(server, loop=loop, max_connections=self._max_connections, **kwargs)

        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
