"""A local OpenAI-compatible server built to never be the bottleneck.

It is a raw ``asyncio.Protocol`` HTTP/1.1 server (keep-alive, pipelining) in its own
process, bound to 127.0.0.1 on a free port. Every response is rendered to bytes once
and then written with a single ``transport.write``. The request's JSON ``model`` field
picks the scenario:

- ``stream-N``: one SSE stream of N content chunks, a ``finish_reason: "stop"`` chunk
  and ``data: [DONE]``; chunked transfer encoding with one HTTP chunk per SSE event,
  as real servers flush one event at a time.
- ``paced-N``: the same stream, one event every 10 ms (the first after 10 ms).
- ``shortpaced-N``: the first event at once, then one every 2 ms.
- ``json``: a non-streamed ``chat.completion``.
- ``stall``, or any URL path starting with ``/stall``: the request is read and never
  answered, until the client hangs up.

The server exits by itself: when its standard input closes (the parent exited or
closed it) or after ``--lifetime`` seconds, whichever comes first.

Run ``python -m benchmarks.server`` to try it; it prints ``{"port": N}`` on one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import Any, Self

from .common import (
    PACED_INTERVAL,
    PYTHON,
    SHORT_PACED_INTERVAL,
    STALL_PREFIX,
    anthropic_events,
    child_env,
    completion_json,
    gemini_events,
    sse_events,
)

__all__ = ["BenchServer", "measure_capacity"]

_MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_MAX_HEAD = 64 * 1024
_MAX_STREAM = 1_000_000
_MAX_PACED = 10_000

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
_CHUNKED_END = b"0\r\n\r\n"


def _frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _json_response(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class _Responses:
    """Every response, rendered once (streams on first use, then cached)."""

    def __init__(self) -> None:
        self.json = _json_response("200 OK", completion_json())
        self.not_found = _json_response(
            "404 Not Found", b'{"error":{"message":"unknown route or model","type":"bench"}}'
        )
        self._streams: dict[int, bytes] = {}
        self._vendor: dict[tuple[str, int], bytes] = {}
        self._paced: dict[int, list[bytes]] = {}
        for n in (50, 20_000):
            self.stream(n)
        self.paced(20)

    def stream(self, n: int) -> bytes:
        cached = self._streams.get(n)
        if cached is None:
            body = b"".join(_frame(event) for event in sse_events(n))
            cached = self._streams[n] = _SSE_HEAD + body + _CHUNKED_END
        return cached

    def vendor_stream(self, wire: str, n: int) -> bytes:
        """The ``n``-chunk stream in Anthropic's or Gemini's wire format."""
        cached = self._vendor.get((wire, n))
        if cached is None:
            events = anthropic_events(n) if wire == "anthropic" else gemini_events(n)
            body = b"".join(_frame(event) for event in events)
            cached = self._vendor[wire, n] = _SSE_HEAD + body + _CHUNKED_END
        return cached

    def short_paced(self, n: int) -> list[bytes]:
        """Writes of a ``shortpaced-N`` stream: the headers with the first content chunk
        (a first token ready at once), then one write per chunk as ``paced``."""
        writes = self.paced(n)
        return [writes[0] + writes[1], *writes[2:]] if len(writes) > 2 else writes

    def paced(self, n: int) -> list[bytes]:
        """Writes of a paced stream: headers, then one write per content chunk (the
        last one also carries the stop chunk, ``[DONE]`` and the chunked terminator)."""
        cached = self._paced.get(n)
        if cached is None:
            frames = [_frame(event) for event in sse_events(n)]
            writes = [_SSE_HEAD, *frames[: n - 1], b"".join(frames[n - 1 :]) + _CHUNKED_END]
            cached = self._paced[n] = writes
        return cached


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, write pre-rendered answers."""

    def __init__(self, responses: _Responses, connections: set[_Connection]) -> None:
        self.responses = responses
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a paced or stalled response is in progress
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._process()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _process(self) -> None:
        buffer = self.buffer
        while not self.busy and self.transport is not None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    self._close()
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            try:
                method, path, _version = lines[0].split(b" ", 2)
            except ValueError:
                self._close()
                return
            length = 0
            chunked = False
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            start = end + 4
            if chunked:
                decoded = _dechunk(buffer, start)
                if decoded is None:
                    return
                body, consumed = decoded
            else:
                if len(buffer) < start + length:
                    return
                body, consumed = bytes(buffer[start : start + length]), start + length
            del buffer[:consumed]
            self._answer(method, path, body)
            if close and not self.busy:
                self._close()
                return

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if path.startswith(STALL_PREFIX.encode()):
            self.busy = True  # never answer; connection_lost cleans up
            return
        found = _MODEL_RE.search(body)
        model = found.group(1) if found else b""
        if method == b"POST" and path.endswith(b"/v1/messages"):
            n = _count(model, b"stream-", _MAX_STREAM)
            transport.write(
                self.responses.not_found
                if n is None
                else self.responses.vendor_stream("anthropic", n)
            )
            return
        if method == b"POST" and b":streamGenerateContent" in path:
            name = path.split(b"/models/", 1)[-1].split(b":", 1)[0]
            n = _count(name, b"stream-", _MAX_STREAM)
            transport.write(
                self.responses.not_found if n is None else self.responses.vendor_stream("gemini", n)
            )
            return
        if method != b"POST" or not path.endswith(b"/chat/completions"):
            transport.write(self.responses.not_found)
        elif model == b"json":
            transport.write(self.responses.json)
        elif (n := _count(model, b"stream-", _MAX_STREAM)) is not None:
            transport.write(self.responses.stream(n))
        elif (n := _count(model, b"paced-", _MAX_PACED)) is not None:
            self._paced(self.responses.paced(n), PACED_INTERVAL)
        elif (n := _count(model, b"shortpaced-", _MAX_PACED)) is not None:
            self._paced(self.responses.short_paced(n), SHORT_PACED_INTERVAL)
        elif model == b"stall":
            self.busy = True
        else:
            transport.write(self.responses.not_found)

    def _paced(self, writes: list[bytes], interval: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(writes[0])
        loop = asyncio.get_running_loop()
        last = len(writes) - 1
        self.timers = [
            loop.call_later(interval * i, self._write_paced, data, i == last)
            for i, data in enumerate(writes[1:], start=1)
        ]

    def _write_paced(self, data: bytes, last: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if last:
            self.timers.clear()
            self.busy = False
            if self.buffer:
                self._process()


def _count(model: bytes, prefix: bytes, limit: int) -> int | None:
    """N from a ``prefix + N`` model name, when it is one and 0 < N <= limit."""
    if not model.startswith(prefix):
        return None
    digits = model[len(prefix) :]
    if not digits.isdigit() or not 0 < int(digits) <= limit:
        return None
    return int(digits)


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked request body at ``start``: (body, end offset), or None if incomplete."""
    parts: list[bytes] = []
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < pos + size + 2:
            return None
        parts.append(bytes(buffer[pos : pos + size]))
        pos += size + 2


async def serve(lifetime: float, port: int = 0) -> None:
    """Serve until stdin closes or ``lifetime`` seconds pass."""
    loop = asyncio.get_running_loop()
    responses = _Responses()
    connections: set[_Connection] = set()
    server = await loop.create_server(
        lambda: _Connection(responses, connections),
        "127.0.0.1",
        port,
        backlog=4096,
        reuse_address=True,
    )
    stop = asyncio.Event()

    def watch_stdin() -> None:
        with contextlib.suppress(Exception):
            while sys.stdin.buffer.read(65536):
                pass
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    loop.call_later(lifetime, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound}), flush=True)
    async with server:
        await stop.wait()
        server.close()
        for conn in list(connections):
            conn._close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifetime", type=float, default=1800.0, help="exit after this many s")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.lifetime, args.port))


class BenchServer:
    """The server in a child process: ``with BenchServer() as server: server.port``."""

    def __init__(self, lifetime: float = 1800.0) -> None:
        self.lifetime = lifetime
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def stall_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STALL_PREFIX}/v1"

    def start(self) -> Self:
        proc = self._proc = subprocess.Popen(
            [PYTHON, "-m", "benchmarks.server", "--lifetime", str(self.lifetime)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        assert proc.stdout is not None
        # Bounded wait for the port line: a timer kills a server that never says it.
        killer = threading.Timer(30.0, proc.kill)
        killer.start()
        try:
            line = proc.stdout.readline()
        finally:
            killer.cancel()
        if not line:
            self.stop()
            raise RuntimeError("the benchmark server did not start")
        self.port = int(json.loads(line)["port"])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- the server's own capacity, measured with raw blocking sockets -------------------


def _request(model: str, port: int) -> bytes:
    body = json.dumps({"model": model, "messages": [], "stream": model != "json"}).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_exactly(sock: socket.socket, view: memoryview, size: int) -> None:
    got = 0
    while got < size:
        n = sock.recv_into(view[got:size])
        if not n:
            raise ConnectionError("the benchmark server closed the connection")
        got += n


def _response_size(sock: socket.socket, request: bytes, terminator: bytes | None) -> int:
    """Send one request and learn the exact size of its (always identical) response."""
    sock.sendall(request)
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data += sock.recv(1 << 20)
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            continue
        if terminator is not None:
            if data.endswith(terminator):
                return len(data)
            continue
        found = re.search(rb"Content-Length: (\d+)", data[:head_end])
        if found is None:
            raise ValueError("a json response without Content-Length")
        length = int(found.group(1))
        if len(data) >= head_end + 4 + length:
            return head_end + 4 + length
    raise TimeoutError("no complete response from the benchmark server")


def measure_capacity(port: int, seconds: float = 2.0) -> dict[str, Any]:
    """What one server process sustains, measured with a minimal raw-socket client.

    - ``json_seq_rps``: non-streamed requests/s, one connection, one at a time.
    - ``json_pipelined_rps``: the same, 32 requests in flight on one connection.
    - ``stream_chunks_per_s``: chunks/s of back-to-back ``stream-20000`` responses.
    """
    out: dict[str, Any] = {}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = _request("json", port)
        size = _response_size(sock, request, None)
        view = memoryview(bytearray(size * 32))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            sock.sendall(request)
            _read_exactly(sock, view, size)
            count += 1
        out["json_seq_rps"] = count / (time.perf_counter() - start)
        batch = request * 32
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            sock.sendall(batch)
            _read_exactly(sock, view, size * 32)
            count += 32
        out["json_pipelined_rps"] = count / (time.perf_counter() - start)

        request = _request("stream-20000", port)
        size = _response_size(sock, request, b"\r\n0\r\n\r\n")
        view = memoryview(bytearray(size))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            sock.sendall(request)
            _read_exactly(sock, view, size)
            count += 1
        elapsed = time.perf_counter() - start
        out["stream_chunks_per_s"] = count * 20_000 / elapsed
        out["stream_mib_per_s"] = count * size / elapsed / (1 << 20)
    return out


if __name__ == "__main__":
    main()
