"""A tiny loopback-only HTTP forward proxy (absolute-form and CONNECT) for tests."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote, urlsplit

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.from_thread import start_blocking_portal
from anyio.streams.stapled import MultiListener

__all__ = ["ProxiedRequest", "ProxyServer"]

_log = logging.getLogger(__name__)
_MAX_HEAD = 64 * 1024
_LINGER = 2.0  # seconds to wait for a peer to close after we finished sending
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DROPPED = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


@dataclass(frozen=True)
class ProxiedRequest:
    """One request received by :class:`ProxyServer`.

    Attributes:
        method: Request method, e.g. ``"POST"``, ``"GET"`` or ``"CONNECT"``.
        target: Request target as sent: an absolute URI, or ``"host:port"`` for CONNECT.
        proxy_authorization: Raw ``Proxy-Authorization`` header value, if any.
        username: User name decoded from a Basic ``Proxy-Authorization``, if any.
        password: Password decoded from a Basic ``Proxy-Authorization``, if any.
    """

    method: str
    target: str
    proxy_authorization: str | None
    username: str | None
    password: str | None


class _Reject(Exception):
    """Answer the client with the error status ``args[0]`` and close the connection."""


class ProxyServer:
    """Loopback-only HTTP forward proxy, used as ``async with ProxyServer(...) as proxy``.

    Only loopback upstreams are ever contacted (others get 403). Bytes are streamed both
    ways unbuffered. The server runs in a background asyncio task, so it may be entered
    and exited from different tasks (e.g. in a pytest-asyncio fixture).

    Args:
        username: Required Basic proxy user name; no authentication when both
            ``username`` and ``password`` are ``None``.
        password: Required Basic proxy password.
        host: Address to listen on.
        port: Port to listen on; ``0`` picks a free port.

    Attributes:
        requests: Every request whose head could be parsed, in arrival order,
            including ones answered with 407 or 403.
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._username = username
        self._password = password
        self._host = host
        self._port = port
        self.requests: list[ProxiedRequest] = []
        self._listener: MultiListener[SocketStream] | None = None
        self._scope: anyio.CancelScope | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The proxy URL without credentials, e.g. ``"http://127.0.0.1:PORT"``."""
        if self._listener is None:
            raise RuntimeError("ProxyServer is not running; use 'async with'")
        port = self._listener.extra(SocketAttribute.local_port)
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    def url_with_auth(self) -> str:
        """Return the proxy URL with URL-quoted credentials embedded.

        Returns:
            ``"http://user:pw@127.0.0.1:PORT"``, or :attr:`url` if no credentials are set.
        """
        if self._username is None and self._password is None:
            return self.url
        user = quote(self._username or "", safe="")
        password = quote(self._password or "", safe="")
        return self.url.replace("http://", f"http://{user}:{password}@", 1)

    async def __aenter__(self) -> ProxyServer:
        """Start listening; :attr:`url` is valid afterwards."""
        if self._listener is not None:
            raise RuntimeError("a ProxyServer can only be entered once")
        self._listener = await anyio.create_tcp_listener(
            local_host=self._host, local_port=self._port
        )
        self._scope = scope = anyio.CancelScope()
        self._task = asyncio.get_running_loop().create_task(self._serve(self._listener, scope))
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop listening and close every open connection and tunnel."""
        if self._scope is None or self._task is None or self._listener is None:
            return  # never entered
        self._scope.cancel()
        try:
            await asyncio.shield(self._task)
        finally:
            await self._listener.aclose()

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[ProxyServer]:
        """Run the proxy on its own event loop in a thread (for sync code)."""
        with start_blocking_portal(name="asyncprov-test-proxy") as portal:
            portal.call(self.__aenter__)
            try:
                yield self
            finally:
                portal.call(self.__aexit__, None, None, None)

    async def _serve(self, listener: MultiListener[SocketStream], scope: anyio.CancelScope) -> None:
        with scope:
            await listener.serve(self._handle)

    async def _handle(self, client: SocketStream) -> None:
        async with client:
            try:
                try:
                    await self._proxy(client)
                except _Reject as exc:
                    await _reject(client, exc.args[0])
            except Exception:  # a test helper must never crash or spam the event loop
                _log.debug("proxy connection failed", exc_info=True)

    async def _proxy(self, client: SocketStream) -> None:
        head, rest = await _read_head(client)
        if not head:
            return  # the client closed without sending anything
        method, target, version, headers = _parse_head(head)
        auth = next((v for k, v in headers if k.lower() == "proxy-authorization"), None)
        username, password = _decode_basic(auth)
        self.requests.append(ProxiedRequest(method, target, auth, username, password))
        if (self._username is not None or self._password is not None) and (
            username != (self._username or "") or password != (self._password or "")
        ):
            raise _Reject(407)
        host, port, forward = _route(method, target, version, headers)
        if not _is_loopback(host):
            raise _Reject(403)
        try:
            upstream = await anyio.connect_tcp(host, port)
        except OSError as exc:
            raise _Reject(502) from exc
        async with upstream:
            if forward is None:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                rest = forward + rest
            if rest:
                await upstream.send(rest)
            await _pipe(client, upstream)


async def _read_head(stream: ByteStream) -> tuple[bytes, bytes]:
    """Read up to the blank line; return (head, bytes after it), or empty head on EOF."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > _MAX_HEAD:
            raise _Reject(431)
        try:
            buf += await stream.receive()
        except anyio.EndOfStream:
            if buf:
                raise _Reject(400) from None
            return b"", b""
    if end > _MAX_HEAD:
        raise _Reject(431)
    return bytes(buf[:end]), bytes(buf[end + 4 :])


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if (
        re.search(r"[\0\r\n]", "".join(lines))  # bare CR/LF could smuggle header lines
        or len(parts) != 3
        or not _TOKEN.fullmatch(parts[0])
        or not parts[1]
        or not re.fullmatch(r"HTTP/1\.[01]", parts[2])
    ):
        raise _Reject(400)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _Reject(400)
        headers.append((name, value.strip(" \t")))
    return parts[0], parts[1], parts[2], headers


def _decode_basic(value: str | None) -> tuple[str | None, str | None]:
    scheme, _, encoded = (value or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # aiohttp's BasicAuth default encoding
    user, sep, password = text.partition(":")
    return (user, password) if sep else (None, None)


def _route(
    method: str, target: str, version: str, headers: list[tuple[str, str]]
) -> tuple[str, int, bytes | None]:
    """Return (host, port, head to forward); the head is ``None`` for CONNECT."""
    try:
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            port = int(port_text)
            host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            if not host or not 0 < port < 65536:
                raise ValueError(target)
            return host, port, None
        split = urlsplit(target)
        if split.scheme.lower() != "http" or not split.hostname:
            raise ValueError(target)
        port = split.port or 80
    except ValueError:
        raise _Reject(400) from None
    path = target[len(split.scheme) + 3 + len(split.netloc) :].partition("#")[0]
    lines = [f"{method} {path if path.startswith('/') else '/' + path} {version}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in _DROPPED]
    if not any(k.lower() == "host" for k, _ in headers):
        lines.append(f"Host: {split.netloc.rpartition('@')[2]}")
    lines.append("Connection: close")
    return split.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _is_loopback(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name: never resolved, never contacted


async def _reject(client: SocketStream, status: int) -> None:
    reason = HTTPStatus(status).phrase
    body = f"{status} {reason}\n".encode()
    extra = 'Proxy-Authenticate: Basic realm="asyncprov"\r\n' if status == 407 else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\n{extra}"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    await client.send(head.encode("latin-1") + body)
    # Half-close and drain what the client still sends (e.g. a request body), so the
    # final close does not turn into a TCP reset that could destroy our answer.
    await client.send_eof()
    with anyio.move_on_after(_LINGER):
        await _copy(client, None)


async def _copy(src: ByteStream, dst: ByteStream | None) -> bool:
    """Copy until EOF (``True``) or a connection error (``False``); ``None`` discards."""
    try:
        async for chunk in src:
            if dst is not None:
                await dst.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return False
    return True


async def _pipe(client: SocketStream, upstream: SocketStream) -> None:
    """Shuttle bytes both ways; when one side is done, tear the other down."""
    async with anyio.create_task_group() as tg:

        async def upload() -> None:
            await _copy(client, upstream)
            tg.cancel_scope.cancel()  # client gone: drop the upstream at once

        async def download() -> None:
            if not await _copy(upstream, client):
                tg.cancel_scope.cancel()
                return
            # Upstream finished cleanly: flush and FIN the client, then give it a
            # moment to read everything and close its side.
            await client.send_eof()
            tg.cancel_scope.deadline = min(tg.cancel_scope.deadline, anyio.current_time() + _LINGER)

        tg.start_soon(upload)
        tg.start_soon(download)
