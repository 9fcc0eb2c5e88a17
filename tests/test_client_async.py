"""AsyncClient end to end against the in-process OpenAI-compatible server."""

from __future__ import annotations

import base64

import pytest

from asyncprov import AsyncClient, AsyncStream, ChatCompletion, ChatCompletionChunk
from asyncprov.providers import OpenaiChat, OpenAICompatible
from asyncprov.testing import OpenAITestServer, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


async def test_stream_yields_chunks_in_order(client: AsyncClient, server: OpenAITestServer) -> None:
    """A stream delivers every text piece in order, tagged with the provider that answered."""
    server.add_reply(Reply(content="one two three"))
    stream = await client.chat.completions.create(
        model="m", messages="hi", stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, AsyncStream)
    chunks = [chunk async for chunk in stream]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert {c.provider for c in chunks} == {"OpenAICompatible"}
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert stream.text == "one two three"


async def test_non_stream_returns_completion(client: AsyncClient, server: OpenAITestServer) -> None:
    """A non-streaming call returns message, finish reason, usage and provider."""
    server.add_reply(Reply(content="Hello, world."))
    reply = await client.chat.completions.create(model="m", messages="hi")
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "Hello, world."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.total_tokens == 1 + 2
    assert reply.provider == "OpenAICompatible"
    assert reply.model == "m"


async def test_request_body_on_the_wire(client: AsyncClient, server: OpenAITestServer) -> None:
    """The server receives the OpenAI body: model, messages, options, usage request, extras."""
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.2,
        max_tokens=5,
        stop=["\n"],
        user="u-1",
    )
    await stream.aclose()
    body = server.requests[-1].json
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 5,
        "stop": ["\n"],
        "user": "u-1",
    }
    headers = server.requests[-1].headers
    assert headers["Accept"] == "text/event-stream"
    assert headers["User-Agent"].startswith("asyncprov/")
    assert "Authorization" not in headers


async def test_folded_stream_equals_native_completion(server: OpenAITestServer) -> None:
    """Folding the stream gives the same completion as the native non-streaming call."""
    calls = [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}]
    server.add_reply(Reply(content="It is sunny in Paris."), Reply(content="It is sunny in Paris."))
    server.add_reply(Reply(tool_calls=calls, finish_reason="tool_calls"))
    server.add_reply(Reply(tool_calls=calls, finish_reason="tool_calls"))
    async with AsyncClient(base_url=server.base_url) as client:
        for _ in range(2):
            native = await client.chat.completions.create(model="m", messages="weather?")
            stream = await client.chat.completions.create(
                model="m", messages="weather?", stream=True, stream_options={"include_usage": True}
            )
            folded = await stream.collect()
            exclude = {"id", "created"}
            assert folded.model_dump(exclude=exclude) == native.model_dump(exclude=exclude)


async def test_streamed_tool_call_fragments_join(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """Tool-call argument fragments arrive in pieces and join into one call when folded."""
    args = '{"location": "Boston, MA", "days": 3}'
    server.add_reply(
        Reply(
            tool_calls=[{"id": "c9", "name": "forecast", "arguments": args}],
            finish_reason="tool_calls",
        )
    )
    stream = await client.chat.completions.create(
        model="m",
        messages="forecast",
        stream=True,
        tools=[{"type": "function", "function": {"name": "forecast", "parameters": {}}}],
    )
    chunks = [c async for c in stream]
    fragments = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    assert len(fragments) > 2
    server.add_reply(
        Reply(
            tool_calls=[{"id": "c9", "name": "forecast", "arguments": args}],
            finish_reason="tool_calls",
        )
    )
    completion = await (
        await client.chat.completions.create(model="m", messages="f", stream=True)
    ).collect()
    call = completion.choices[0].message.tool_calls
    assert call is not None and call[0].id == "c9"
    assert call[0].function.name == "forecast" and call[0].function.arguments == args
    assert completion.choices[0].finish_reason == "tool_calls"
    assert server.requests[0].json["tools"][0]["function"]["name"] == "forecast"


async def test_images_become_image_url_parts(
    client: AsyncClient, server: OpenAITestServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """image= and images= (bytes, path, file, URL) become parts of the last user message."""
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with path.open("rb") as handle:
        reply = await client.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "What is in the image?"},
            ],
            image=handle,
            images=[PNG, str(path), "https://example.com/cat.jpg"],
        )
    assert reply.choices[0].message.content == "You said: What is in the image?"
    messages = server.requests[-1].json["messages"]
    assert messages[0] == {"role": "user", "content": "first"}
    assert messages[-1]["content"] == [
        {"type": "text", "text": "What is in the image?"},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": data_url}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


async def test_image_parts_in_messages_pass_through(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """Image parts written in the messages (including Reka's bare-string form) are sent as parts."""
    await client.chat.completions.create(
        model="m",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": "https://example.com/a.png"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/b.png", "detail": "low"},
                    },
                ],
            }
        ],
    )
    assert server.requests[-1].json["messages"][0]["content"][1:] == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png", "detail": "low"}},
    ]


async def test_api_key_sent_as_bearer(server: OpenAITestServer) -> None:
    """A key given to the client reaches the server as a Bearer token; a wrong one gets 401."""
    server.api_key = "sk-local-test"
    async with AsyncClient(base_url=server.base_url, api_key="sk-local-test") as client:
        reply = await client.chat.completions.create(model="m", messages="hi")
    assert reply.choices[0].message.content == "You said: hi"
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-local-test"


async def test_openai_chat_reads_key_from_env(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenaiChat takes its key from OPENAI_API_KEY and has a default model."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    async with AsyncClient(OpenaiChat(base_url=server.base_url)) as client:
        reply = await client.chat.completions.create(messages="hi")
    assert reply.provider == "OpenaiChat"
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-from-env"
    assert server.requests[-1].json["model"] == OpenaiChat.default_model


async def test_per_call_provider_and_key(server: OpenAITestServer) -> None:
    """provider= and api_key= on one call override the client's for that call only."""
    other = OpenAICompatible(base_url=server.base_url, headers={"X-Tenant": "t1"})
    async with AsyncClient(base_url="http://127.0.0.1:9/v1") as client:
        await client.chat.completions.create(model="m", messages="hi", provider=other, api_key="k2")
    assert server.requests[-1].headers["Authorization"] == "Bearer k2"
    assert server.requests[-1].headers["X-Tenant"] == "t1"


async def test_stream_context_manager_and_collect(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A stream used with async with can be read partly and closed; collect() folds the rest."""
    server.add_reply(Reply(content="a b c d"))
    async with await client.chat.completions.create(model="m", messages="x", stream=True) as stream:
        first = await anext(stream)
        assert first.choices[0].delta.role == "assistant"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    reply = await client.chat.completions.create(
        model="m", messages="x y", stream=True, stream_options={"include_usage": True}
    )
    completion = await reply.collect()
    assert completion.choices[0].message.content == "You said: x y"
    assert completion.usage is not None and completion.provider == "OpenAICompatible"


async def test_usage_chunk_only_when_asked(client: AsyncClient, server: OpenAITestServer) -> None:
    """Without stream_options every chunk has a choice, so chunk.choices[0] is always safe."""
    stream = await client.chat.completions.create(model="m", messages="a b c", stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(len(chunk.choices) == 1 for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert "stream_options" not in server.requests[-1].json
