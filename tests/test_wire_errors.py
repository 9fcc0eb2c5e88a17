"""Typed errors for status codes, in-stream errors and malformed or cut-short bodies."""

from __future__ import annotations

import pytest

from asyncprov import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    EventTooLargeError,
    InternalServerError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    ResponseDecodeError,
    StreamInterruptedError,
)
from asyncprov.testing import OpenAITestServer, Reply


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (500, InternalServerError),
        (503, InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_status_errors_are_typed(
    client: AsyncClient, server: OpenAITestServer, status: int, error_type: type, stream: bool
) -> None:
    """Each error status raises its own type, with the real status, provider, model and message."""
    server.add_reply(
        Reply(
            status=status,
            error={"message": "nope", "type": "x_error", "code": "c1"},
            headers={"x-request-id": "req-7"},
        )
    )
    with pytest.raises(error_type) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=stream)
    error = caught.value
    assert error.status == status
    assert error.provider == "OpenAICompatible" and error.model == "m"
    assert error.message == "nope" and error.error_type == "x_error" and error.error_code == "c1"
    assert error.headers["x-request-id"] == "req-7"
    assert '"nope"' in error.body
    assert str(error).startswith(f"HTTP {status}: nope")


async def test_rate_limit_carries_retry_after(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A 429 is a RateLimitError whose retry_after is parsed from the header."""
    server.add_reply(Reply(status=429, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimitError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert caught.value.retry_after == 7.0


async def test_non_json_error_body_keeps_snippet(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """An error status with a plain-text body keeps that text as message and snippet."""
    server.add_reply(Reply(status=502, error="bad gateway upstream"))
    with pytest.raises(InternalServerError) as caught:
        await client.chat.completions.create(model="m", messages="hi")
    assert caught.value.status == 502 and "bad gateway upstream" in caught.value.body


@pytest.mark.parametrize("fault", ["error_event", "event_error"])
async def test_in_stream_error_after_content(
    client: AsyncClient, server: OpenAITestServer, fault: str
) -> None:
    """An error event after content interrupts the stream; the ProviderError is the cause."""
    server.add_reply(Reply(content="alpha beta gamma", fault=fault, fault_after=2))  # type: ignore[arg-type]
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    seen = []
    with pytest.raises(StreamInterruptedError) as caught:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "alpha beta "
    assert caught.value.partial_text == "alpha beta "
    assert caught.value.provider == "OpenAICompatible"
    cause = caught.value.__cause__
    assert isinstance(cause, ProviderError) and cause.message in ("overloaded", "boom")


async def test_in_stream_error_before_content_raises_at_create(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """An error event before any content surfaces from create() itself."""
    server.add_reply(Reply(fault="error_event", fault_after=-1))
    with pytest.raises(ProviderError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert caught.value.error_type == "server_error" and caught.value.error_code == "503"


@pytest.mark.parametrize("fault", ["truncate", "no_done"])
async def test_cut_stream_is_interrupted_with_partial_text(
    client: AsyncClient, server: OpenAITestServer, fault: str
) -> None:
    """A stream cut off or missing [DONE] raises StreamInterruptedError with the partial text."""
    server.add_reply(Reply(content="one two three four", fault=fault, fault_after=2))  # type: ignore[arg-type]
    if fault == "no_done":
        server._replies[-1].fault_after = 99  # let every content chunk through, drop only [DONE]
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in stream:
            pass
    expected = "one two " if fault == "truncate" else "one two three four"
    assert caught.value.partial_text == expected
    assert stream.text == expected
    if fault == "truncate":
        assert isinstance(caught.value.__cause__, APIConnectionError)


async def test_no_finish_reason_is_invented(client: AsyncClient, server: OpenAITestServer) -> None:
    """When the stream is cut, nothing reports a finish_reason that never arrived."""
    server.add_reply(Reply(content="one two three", fault="truncate", fault_after=1))
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    reasons = []
    with pytest.raises(StreamInterruptedError):
        async for chunk in stream:
            reasons += [c.finish_reason for c in chunk.choices]
    assert reasons == [None, None]


@pytest.mark.parametrize("stream", [False, True])
async def test_wrong_content_type_is_decode_error(
    client: AsyncClient, server: OpenAITestServer, stream: bool
) -> None:
    """A 200 that is HTML instead of SSE/JSON raises ResponseDecodeError with status and snippet."""
    server.add_reply(Reply(fault="wrong_type"))
    with pytest.raises(ResponseDecodeError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=stream)
    assert caught.value.status == 200
    assert "<html>maintenance</html>" in caught.value.body
    assert "text/html" in caught.value.message


async def test_malformed_event_is_decode_error(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A broken JSON event after content: interrupted, caused by ResponseDecodeError."""
    server.add_reply(Reply(content="a b", fault="malformed", fault_after=1))
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    with pytest.raises(StreamInterruptedError) as caught:
        async for _ in stream:
            pass
    cause = caught.value.__cause__
    assert isinstance(cause, ResponseDecodeError)
    assert '{"choices": [{"delta":' in cause.body
    assert caught.value.partial_text == "a "


async def test_connection_refused_is_connection_error() -> None:
    """Nothing listening gives APIConnectionError, not an aiohttp exception."""
    async with AsyncClient(base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert "127.0.0.1" in str(caught.value)


async def test_reset_before_headers_is_connection_error(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A connection reset before headers gives APIConnectionError."""
    server.add_reply(Reply(fault="reset"))
    with pytest.raises(APIConnectionError):
        await client.chat.completions.create(model="m", messages="hi", stream=True)


async def test_event_size_limit(server: OpenAITestServer) -> None:
    """An event larger than max_event_size raises EventTooLargeError instead of buffering it."""
    server.add_reply(Reply(content="x" * 5000, chunks=1))
    async with AsyncClient(base_url=server.base_url, max_event_size=1024) as client:
        with pytest.raises(EventTooLargeError) as caught:
            stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
            async for _ in stream:
                pass
    assert caught.value.limit == 1024


@pytest.mark.parametrize(
    "noise",
    [b"data:\n\n", b"data: \n\n", b"event: ping\n\n", b"event: ping\ndata: {}\n\n", b": hi\n\n"],
)
async def test_empty_and_named_events_are_skipped(
    client: AsyncClient, server: OpenAITestServer, noise: bytes
) -> None:
    """Empty events, comments and named non-error events between chunks are ignored."""
    chunk = b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'
    body = chunk % b"a" + noise + chunk % b"b" + b"data: [DONE]\n\n"
    server.add_reply(Reply(raw=body, content_type="text/event-stream"))
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "ab"


async def test_n_greater_than_one_text_is_first_choice(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """With several choices, stream.text and partial_text follow choice 0 only."""
    line = b'data: {"choices":[{"index":%d,"delta":{"content":"%s"}}]}\n\n'
    body = line % (0, b"A1 ") + line % (1, b"B1 ") + line % (0, b"A2") + b"data: [DONE]\n\n"
    server.add_reply(Reply(raw=body, content_type="text/event-stream"))
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True, n=2)
    completion = await stream.collect()
    assert stream.text == "A1 A2"
    assert [c.message.content for c in completion.choices] == ["A1 A2", "B1 "]
