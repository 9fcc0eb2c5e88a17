"""Streams release their connection promptly when the caller stops reading."""

from __future__ import annotations

import gc

import anyio
import pytest

from asyncprov import AsyncClient
from asyncprov.testing import OpenAITestServer, Reply

SLOW = Reply(content="tick " * 200, chunk_delay=0.01)


async def test_break_with_context_manager_closes(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """Leaving `async with` after a break closes the socket; the server sees the disconnect."""
    server.add_reply(SLOW)
    async with await client.chat.completions.create(
        model="m", messages="hi", stream=True
    ) as stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    with anyio.fail_after(5):
        await server.wait_for_disconnect()


async def test_aclose_closes(client: AsyncClient, server: OpenAITestServer) -> None:
    """aclose() mid-stream closes the socket and ends iteration."""
    server.add_reply(SLOW)
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    await anext(stream)
    await stream.aclose()
    with anyio.fail_after(5):
        await server.wait_for_disconnect()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_dropping_the_stream_closes(client: AsyncClient, server: OpenAITestServer) -> None:
    """A stream dropped without closing is finalised and its socket closed."""
    server.add_reply(SLOW)
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    await anext(stream)
    del stream
    gc.collect()
    with anyio.fail_after(5):
        await server.wait_for_disconnect()


async def test_cancelling_the_consumer_closes(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """Cancelling the task that reads the stream closes the socket at once."""
    server.add_reply(SLOW)
    got_content = anyio.Event()

    async def consume() -> None:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got_content.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await got_content.wait()
        tg.cancel_scope.cancel()
    with anyio.fail_after(5):
        await server.wait_for_disconnect()


async def test_connection_reused_after_complete_stream(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A stream read to its end returns its connection to the pool for the next call."""
    for _ in range(3):
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        async for _chunk in stream:
            pass
    assert server.disconnects == 0
    session = await client._http.session()
    assert session.connector is not None
    assert len(session.connector._conns) == 1  # one idle keep-alive connection


async def test_aclose_from_another_task(client: AsyncClient, server: OpenAITestServer) -> None:
    """aclose() while another task is reading cuts the connection; the reader gets a typed error."""
    from asyncprov import StreamInterruptedError

    server.add_reply(Reply(content="tick " * 200, chunk_delay=0.02))
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    reading = anyio.Event()
    outcome: list[BaseException | None] = []

    async def reader() -> None:
        try:
            async for _ in stream:
                reading.set()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await reading.wait()
        await stream.aclose()
    assert len(outcome) == 1 and isinstance(outcome[0], StreamInterruptedError)
    with anyio.fail_after(5):
        await server.wait_for_disconnect()


async def test_reading_after_client_close_is_typed(server: OpenAITestServer) -> None:
    """Closing the client under an open stream makes further reads fail with a typed error."""
    from asyncprov import APIError

    server.add_reply(Reply(content="tick " * 100, chunk_delay=0.01))
    client = AsyncClient(base_url=server.base_url)
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    await client.aclose()
    with pytest.raises(APIError):
        async for _ in stream:
            pass
