"""Tests for the loopback HTTP forward proxy in asyncprov.testing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest
from aiohttp import web

from asyncprov.testing._proxy import ProxiedRequest, ProxyServer

USER = "alice"
PASSWORD = "p@ss:w/rd%é"  # needs URL-quoting and is not plain ASCII
AUTH_HEADER = aiohttp.encode_basic_auth(USER, PASSWORD)
# aiohttp encodes credentials taken from a proxy URL (and BasicAuth by default) as latin-1
LATIN1_AUTH_HEADER = aiohttp.encode_basic_auth(USER, PASSWORD, encoding="latin-1")
_connect_tcp = anyio.connect_tcp  # kept for the test's own raw clients when patched
CHUNKS = [f"data: {i}\n\n".encode() for i in range(5)]


@dataclass
class Upstream:
    """State of the test's origin server."""

    url: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """Run a tiny aiohttp origin server on 127.0.0.1."""
    state = Upstream()

    async def chat(request: web.Request) -> web.Response:
        state.seen.append((request.raw_path, dict(request.headers)))
        return web.json_response(await request.json())

    async def stream(request: web.Request) -> web.StreamResponse:
        state.seen.append((request.raw_path, dict(request.headers)))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(CHUNKS[0])
        await asyncio.wait_for(state.gate.wait(), 5)  # only the client's read opens it
        for chunk in CHUNKS[1:]:
            await asyncio.sleep(0.01)
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def forever(request: web.Request) -> web.StreamResponse:
        # One event, then silence: only the proxy closing this connection can end it
        # early (the runner cancels handlers whose connection is lost).
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            await resp.write(b"data: tick\n\n")
            await asyncio.sleep(10)
        except (ConnectionResetError, asyncio.CancelledError):
            state.disconnected.set()
            raise
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stream", stream)
    app.router.add_get("/forever", forever)
    runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def proxy() -> AsyncIterator[ProxyServer]:
    """Run an authenticating proxy (entered and exited in different tasks)."""
    async with ProxyServer(username=USER, password=PASSWORD) as server:
        yield server


def _auth_kwargs(proxy: ProxyServer, style: str = "url") -> dict[str, Any]:
    # NB: aiohttp 3.14 ignores proxy_headers= for plain-http targets (only CONNECT uses them),
    # so a Proxy-Authorization meant for an absolute-form request goes in headers=.
    if style == "headers":
        return {"proxy": proxy.url, "headers": {"Proxy-Authorization": AUTH_HEADER}}
    if style == "proxy_auth":
        with pytest.warns(DeprecationWarning, match="BasicAuth is deprecated"):
            auth = aiohttp.BasicAuth(USER, PASSWORD, encoding="utf-8")
        return {"proxy": proxy.url, "proxy_auth": auth}
    return {"proxy": proxy.url_with_auth()}


async def _raw(proxy: ProxyServer, data: bytes) -> bytes:
    """Send raw bytes to the proxy and read its answer until it closes."""
    port = urlsplit(proxy.url).port
    assert port is not None
    out = bytearray()
    async with await _connect_tcp("127.0.0.1", port) as conn:
        await conn.send(data)
        with anyio.fail_after(5):
            async for chunk in conn:
                out += chunk
    return bytes(out)


@pytest.mark.parametrize(
    ("style", "header"),
    [("headers", AUTH_HEADER), ("proxy_auth", AUTH_HEADER), ("url", LATIN1_AUTH_HEADER)],
)
async def test_post_json_is_forwarded_with_credentials(
    upstream: Upstream, proxy: ProxyServer, style: str, header: str
) -> None:
    """A JSON POST goes through the proxy, which records method, target and credentials."""
    target = f"{upstream.url}/v1/chat/completions"
    kwargs = _auth_kwargs(proxy, style)
    async with aiohttp.ClientSession() as session:
        for i in range(2):  # the second request needs a fresh connection
            if style == "proxy_auth":
                with pytest.warns(DeprecationWarning, match="proxy_auth"):
                    resp = await session.post(target, json={"n": i}, **kwargs)
            else:
                resp = await session.post(target, json={"n": i}, **kwargs)
            async with resp:
                assert resp.status == 200
                assert await resp.json() == {"n": i}
    expected = ProxiedRequest("POST", target, header, USER, PASSWORD)
    assert proxy.requests == [expected, expected]
    for path, headers in upstream.seen:
        assert path == "/v1/chat/completions"
        assert "Proxy-Authorization" not in headers
        assert headers["Connection"] == "close"


async def test_streamed_response_arrives_incrementally(
    upstream: Upstream, proxy: ProxyServer
) -> None:
    """Chunks are relayed as they come: the first arrives before the rest is written."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{upstream.url}/stream", **_auth_kwargs(proxy)) as resp,
    ):
        assert resp.status == 200
        with anyio.fail_after(5):
            first = await resp.content.readuntil(b"\n\n")
        assert first == CHUNKS[0]
        upstream.gate.set()
        assert first + await resp.read() == b"".join(CHUNKS)


@pytest.mark.parametrize("headers", [{}, {"Proxy-Authorization": "Basic Ym9iOndyb25n"}])
async def test_missing_or_wrong_credentials_get_407(
    upstream: Upstream, proxy: ProxyServer, headers: dict[str, str]
) -> None:
    """Requests without matching credentials get 407 and are still recorded."""
    target = f"{upstream.url}/v1/chat/completions"
    async with (
        aiohttp.ClientSession() as session,
        session.post(target, json={"big": "x" * 100_000}, proxy=proxy.url, headers=headers) as resp,
    ):
        assert resp.status == 407
        assert resp.headers["Proxy-Authenticate"].startswith("Basic ")
    auth = headers.get("Proxy-Authorization")
    creds = ("bob", "wrong") if auth else (None, None)
    assert proxy.requests == [ProxiedRequest("POST", target, auth, *creds)]
    assert upstream.seen == []


@pytest.mark.parametrize("target", ["http://10.255.255.1/", "http://example.com:8080/v1"])
async def test_non_loopback_target_is_refused_without_connecting(
    proxy: ProxyServer, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """Non-loopback upstreams get 403 and the proxy never opens a connection."""
    calls: list[object] = []

    async def spy(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("must not connect")

    monkeypatch.setattr(anyio, "connect_tcp", spy)
    async with (
        aiohttp.ClientSession() as session,
        session.get(target, **_auth_kwargs(proxy)) as resp,
    ):
        assert resp.status == 403
    connect = f"CONNECT 10.255.255.1:443 HTTP/1.1\r\nProxy-Authorization: {AUTH_HEADER}\r\n\r\n"
    assert (await _raw(proxy, connect.encode())).startswith(b"HTTP/1.1 403 ")
    assert calls == []
    assert [(r.method, r.target) for r in proxy.requests] == [
        ("GET", target),
        ("CONNECT", "10.255.255.1:443"),
    ]


async def test_client_disconnect_mid_stream_reaches_upstream(
    upstream: Upstream, proxy: ProxyServer
) -> None:
    """Closing the client mid-stream makes the upstream handler see the disconnect."""
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"{upstream.url}/forever", **_auth_kwargs(proxy))
        assert await resp.content.readuntil(b"\n\n") == b"data: tick\n\n"
        resp.close()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_aexit_closes_open_tunnels(upstream: Upstream) -> None:
    """Leaving the proxy context tears down a live CONNECT tunnel at once."""
    port = int(upstream.url.rpartition(":")[2])
    async with ProxyServer() as proxy:
        proxy_port = urlsplit(proxy.url).port
        assert proxy_port is not None
        conn = await anyio.connect_tcp("127.0.0.1", proxy_port)
        async with conn:
            await conn.send(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
            request = f"GET /forever HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            with anyio.fail_after(5):
                assert (await conn.receive()).startswith(b"HTTP/1.1 200 Connection established")
                await conn.send(request.encode())
                assert b"tick" in await conn.receive()
            started = time.monotonic()
            await proxy.__aexit__(None, None, None)
            assert time.monotonic() - started < 1
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    await conn.receive()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    assert proxy.requests == [ProxiedRequest("CONNECT", f"127.0.0.1:{port}", None, None, None)]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET http://127.0.0.1:1/ HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
        (b"CONNECT 127.0.0.1:notaport HTTP/1.1\r\n\r\n", b"400"),
        (b"GET http://127.0.0.1:1/ HTTP/1.1\r\n" + b"X: " + b"a" * 70_000, b"431"),
        (b"GET http://127.0.0.1:1/ HTTP/1.1\r\n", b"400"),  # EOF before the blank line
    ],
)
async def test_malformed_heads_are_rejected_quietly(
    caplog: pytest.LogCaptureFixture, data: bytes, status: bytes
) -> None:
    """Malformed heads get an error status; nothing is logged and the proxy keeps working."""
    async with ProxyServer() as proxy:
        port = urlsplit(proxy.url).port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as conn:
            await conn.send(data)
            await conn.send_eof()
            out = bytearray()
            with anyio.fail_after(5):
                async for chunk in conn:
                    out += chunk
        assert out.startswith(b"HTTP/1.1 " + status + b" ")
        # still alive afterwards; port 1 on loopback is closed, so 502
        assert (await _raw(proxy, b"GET http://127.0.0.1:1/ HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 502 "
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_urls() -> None:
    """`url` needs a running server; `url_with_auth` percent-encodes the credentials."""
    server = ProxyServer(username="a b", password=PASSWORD)
    with pytest.raises(RuntimeError):
        _ = server.url
    async with server:
        port = urlsplit(server.url).port
        assert server.url == f"http://127.0.0.1:{port}"
        assert server.url_with_auth() == f"http://a%20b:p%40ss%3Aw%2Frd%25%C3%A9@127.0.0.1:{port}"
    async with ProxyServer() as anonymous:
        assert anonymous.url_with_auth() == anonymous.url
