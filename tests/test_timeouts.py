"""Each timeout phase ends the call with a typed error; keepalives and trickles are not progress."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from asyncprov import (
    AsyncClient,
    ConnectTimeoutError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    StreamInterruptedError,
    StreamTimeoutError,
    Timeout,
    TotalTimeoutError,
)
from asyncprov.testing import OpenAITestServer, Reply


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose listen backlog is full, so new connections hang in connect."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, listener):
        sock.close()


async def test_connect_timeout(unaccepting_port: int) -> None:
    """A connection that cannot be opened ends in ConnectTimeoutError (phase 'connect')."""
    url = f"http://127.0.0.1:{unaccepting_port}/v1"
    async with AsyncClient(base_url=url, timeout=Timeout(connect=0.2)) as client:
        with pytest.raises(ConnectTimeoutError) as caught:
            await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert caught.value.phase == "connect"


async def test_first_chunk_timeout_before_headers(server: OpenAITestServer) -> None:
    """A server slow to send headers ends in FirstChunkTimeoutError, and sees the disconnect."""
    server.add_reply(Reply(delay=30))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, timeout=Timeout(first_chunk=0.2)
    ) as client:
        with pytest.raises(FirstChunkTimeoutError) as caught:
            await client.chat.completions.create(model="m", messages="hi", stream=True)
        with anyio.fail_after(5):
            await server.wait_for_disconnect()
    assert caught.value.phase == "first_chunk" and caught.value.timeout == 0.2


async def test_a_timeout_while_sending_leaves_the_task_usable(server: OpenAITestServer) -> None:
    """The attempt's one timer cancels the sending task when the deadline passes before
    the headers (a whole reply too), turned into the typed timeout; no cancellation is
    left pending on the task: its next call succeeds."""
    server.add_reply(Reply(delay=30))
    server.add_reply(Reply(content="after the timeout"))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, timeout=Timeout(first_chunk=0.2)
    ) as client:
        with pytest.raises(FirstChunkTimeoutError):
            await client.chat.completions.create(model="m", messages="hi")
        await anyio.lowlevel.checkpoint()  # a pending cancellation would arrive here
        reply = await client.chat.completions.create(model="m", messages="hi")
    assert reply.choices[0].message.content == "after the timeout"


async def test_a_callers_cancel_while_sending_stays_a_cancel(server: OpenAITestServer) -> None:
    """The caller's own cancellation while the request waits for its headers is not the
    attempt's timeout: the caller's scope catches it, and the connection is closed."""
    server.add_reply(Reply(delay=30))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, timeout=Timeout(first_chunk=5.0)
    ) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.chat.completions.create(model="m", messages="hi")
        assert scope.cancelled_caught
        with anyio.fail_after(5):
            await server.wait_for_disconnect()


@pytest.mark.parametrize("fault", ["keepalive", "trickle", "stall"])
async def test_first_chunk_timeout_without_content(server: OpenAITestServer, fault: str) -> None:
    """Headers, then only keepalives / trickled bytes / nothing: still a first_chunk timeout."""
    server.add_reply(Reply(fault=fault, fault_after=0, chunk_delay=0.01))  # type: ignore[arg-type]
    timeout = Timeout(first_chunk=0.3, idle=0.3)
    async with AsyncClient(base_url=server.base_url, max_retries=0, timeout=timeout) as client:
        with pytest.raises(FirstChunkTimeoutError):
            await client.chat.completions.create(model="m", messages="hi", stream=True)


@pytest.mark.parametrize("fault", ["keepalive", "trickle", "stall"])
async def test_idle_timeout_mid_stream(server: OpenAITestServer, fault: str) -> None:
    """After content, keepalive / trickle / silence ends the stream: interrupted, idle timeout."""
    server.add_reply(Reply(content="a b c", fault=fault, fault_after=2, chunk_delay=0.01))  # type: ignore[arg-type]
    timeout = Timeout(first_chunk=5, idle=0.3)
    async with AsyncClient(base_url=server.base_url, max_retries=0, timeout=timeout) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
        with anyio.fail_after(5):
            await server.wait_for_disconnect()
    cause = caught.value.__cause__
    assert isinstance(cause, IdleTimeoutError) and cause.phase == "idle"
    assert isinstance(caught.value, StreamTimeoutError | TimeoutError)
    assert caught.value.phase == "idle" and caught.value.timeout == 0.3
    assert caught.value.partial_text == "a b "


async def test_total_timeout_caps_a_steady_stream(server: OpenAITestServer) -> None:
    """A stream that keeps making progress is still ended by the total timeout."""
    server.add_reply(Reply(content="x " * 1000, chunk_delay=0.02))
    timeout = Timeout(first_chunk=5, idle=5, total=0.4)
    async with AsyncClient(base_url=server.base_url, max_retries=0, timeout=timeout) as client:
        started = time.monotonic()
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
    assert isinstance(caught.value.__cause__, TotalTimeoutError)
    assert time.monotonic() - started < 3
    assert caught.value.partial_text.startswith("x x ")


async def test_number_timeout_is_total(server: OpenAITestServer) -> None:
    """timeout=<number> on a call bounds the whole call, non-streaming included."""
    server.add_reply(Reply(delay=30))
    async with AsyncClient(base_url=server.base_url) as client:
        with pytest.raises(TotalTimeoutError):
            await client.chat.completions.create(model="m", messages="hi", timeout=0.2)


async def test_slow_consumer_is_not_idle(server: OpenAITestServer) -> None:
    """Time the caller spends between chunks does not count against the idle timeout."""
    server.add_reply(Reply(content="a b c d"))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, timeout=Timeout(idle=0.1)
    ) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            await anyio.sleep(0.15)
    assert text == "a b c d"


async def test_connect_timeout_covers_waiting_for_the_pool(server: OpenAITestServer) -> None:
    """Waiting for a free pooled connection is bounded by the connect timeout."""
    server.add_reply(Reply(content="tick " * 100, chunk_delay=0.05))
    timeout = Timeout(connect=0.2, first_chunk=5, total=10)
    async with AsyncClient(base_url=server.base_url, connection_limit=1, timeout=timeout) as c:
        holder = await c.chat.completions.create(model="m", messages="hold", stream=True)
        async with holder:
            with pytest.raises(ConnectTimeoutError):
                await c.chat.completions.create(model="m", messages="second")


async def test_total_holds_when_no_read_has_to_wait(server: OpenAITestServer) -> None:
    """A slow consumer on a body that arrived all at once is still ended by total."""
    server.add_reply(Reply(content="x " * 3000))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, timeout=Timeout(total=0.3)
    ) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        with pytest.raises(StreamTimeoutError) as caught:
            async for _ in stream:
                await anyio.sleep(0.002)
    assert caught.value.phase == "total"
