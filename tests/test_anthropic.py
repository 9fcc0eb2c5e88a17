"""Anthropic's Messages API: the mapping both ways, and calls against a local server
speaking its wire format (streams, tools, errors, cut streams)."""

from __future__ import annotations

import json

import pytest

from asyncprov import (
    AsyncClient,
    AuthenticationError,
    Client,
    InternalServerError,
    ProviderError,
    StreamInterruptedError,
)
from asyncprov._request import build_request
from asyncprov._sse import SSEDecoder
from asyncprov.providers import Anthropic
from asyncprov.providers.anthropic import DEFAULT_MAX_TOKENS, _map_request, _Stream
from asyncprov.providers.base import json_event
from asyncprov.testing import AnthropicTestServer, Reply, instant_retries

TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {"id": "toolu_1", "name": "weather", "arguments": '{"city": "Paris, France"}'}


def request(**fields: object) -> dict[str, object]:
    return _map_request(
        build_request(
            model="claude-x", messages=fields.pop("messages", "hi"), stream=True, **fields
        ),
        "claude-x",
    )


def test_request_mapping() -> None:
    """System messages go to `system`, images to image blocks (base64 or URL), tools and
    tool choice to Anthropic's shapes, stop to stop_sequences; max_tokens has a default;
    OpenAI-only fields are dropped, `user` becomes metadata."""
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
    ]
    body = request(
        messages=messages, tools=[TOOL], tool_choice="required", stop="END", temperature=0.2,
        n=1, logprobs=True, user="u-1",
    )  # fmt: skip
    assert body["system"] == "be brief" and body["max_tokens"] == DEFAULT_MAX_TOKENS
    user, assistant, tool = body["messages"]  # type: ignore[misc]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert user["content"][2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert assistant["content"] == [
        {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert tool == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
    }
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "the weather",
            "input_schema": TOOL["function"]["parameters"],
        }  # type: ignore[index]
    ]
    assert body["tool_choice"] == {"type": "any"} and body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"} and "n" not in body and "logprobs" not in body
    forced = request(tool_choice={"type": "function", "function": {"name": "weather"}})
    assert forced["tool_choice"] == {"type": "tool", "name": "weather"}


def test_tool_call_stream_split_at_every_byte() -> None:
    """The server's stream cut into two reads at every byte offset gives the same text,
    tool call and finish reason."""
    server = AnthropicTestServer()
    reply = Reply(content="Checking.", tool_calls=[CALL])
    body = b"".join(server.render_events({"model": "m", "messages": []}, reply))
    expected = None
    for cut in range(len(body) + 1):
        decoder, state = SSEDecoder(), _Stream("Anthropic", "m", include_usage=False)
        text, arguments, names, finish = "", "", [], None
        for part in (body[:cut], body[cut:]):
            for event in decoder.feed(part) if part else []:
                chunk = state.process(json_event(event.data))
                if chunk is None:
                    continue
                delta = chunk.choices[0].delta
                text += delta.content or ""
                for call in delta.tool_calls or []:
                    names += [call.function.name] if call.function and call.function.name else []
                    arguments += call.function.arguments or "" if call.function else ""
                finish = chunk.choices[0].finish_reason or finish
        got = (text, names, arguments, finish)
        expected = expected or got
        assert got == expected == ("Checking.", ["weather"], CALL["arguments"], "tool_calls"), cut


async def test_a_stream_through_the_client() -> None:
    """Text, the finish reason and usage, from the Messages API; the key and version
    headers are sent."""
    async with AnthropicTestServer(
        replies=["Hello from Claude."], api_key="sk-ant-test-12345"
    ) as server:
        provider = Anthropic(api_key="sk-ant-test-12345", base_url=server.base_url)
        async with AsyncClient(provider) as client:
            stream = await client.chat.completions.create(
                messages="hi", stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Claude." and {c.provider for c in chunks} == {"Anthropic"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    sent = server.requests[-1]
    assert sent.headers["anthropic-version"] == "2023-06-01" and sent.path == "/v1/messages"


async def test_a_whole_reply_with_a_tool_call() -> None:
    """stream=False folds the stream: tool_calls and finish_reason "tool_calls"."""
    async with (
        AnthropicTestServer(replies=[Reply(content="", tool_calls=[CALL])]) as server,
        AsyncClient(Anthropic(api_key="k", base_url=server.base_url)) as client,
    ):
        reply = await client.chat.completions.create(messages="weather?", tools=[TOOL])
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and message.tool_calls[0].function.name == "weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris, France"}


async def test_error_shapes_are_typed() -> None:
    """529 overloaded_error is a retryable InternalServerError, 401 an
    AuthenticationError, an `event: error` mid-stream a ProviderError, and a stream cut
    before message_stop is interrupted."""
    overloaded = Reply(status=529, error={"type": "overloaded_error", "message": "Overloaded"})
    async with AnthropicTestServer() as server:
        provider = Anthropic(api_key="k", base_url=server.base_url)
        async with AsyncClient(provider, max_retries=0) as client:
            server.add_reply(overloaded)
            with pytest.raises(InternalServerError) as caught:
                await client.chat.completions.create(messages="hi")
            assert caught.value.status == 529 and caught.value.error_type == "overloaded_error"
            server.add_reply(
                Reply(status=401, error={"type": "authentication_error", "message": "bad key"})
            )
            with pytest.raises(AuthenticationError):
                await client.chat.completions.create(messages="hi")
            server.add_reply(Reply(content="a b c", fault="event_error", fault_after=1))
            with pytest.raises((ProviderError, StreamInterruptedError)):
                await client.chat.completions.create(messages="hi")
            server.add_reply(Reply(content="a b c", fault="no_done", fault_after=1))
            with pytest.raises(StreamInterruptedError):
                await client.chat.completions.create(messages="hi")
        with instant_retries():
            server.add_reply(overloaded)
            async with AsyncClient(provider) as client:
                reply = await client.chat.completions.create(messages="hi")
    assert [a.error_type for a in reply.attempts] == ["InternalServerError", None]


def test_the_sync_client_and_the_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client(provider="Anthropic") reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL."""
    server = AnthropicTestServer(api_key="sk-ant-env-123456")
    with server.run_in_thread():
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-123456")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        with Client(provider="Anthropic") as client:
            reply = client.chat.completions.create(messages="hello")
    assert reply.choices[0].message.content == "You said: hello"
    assert reply.provider == "Anthropic"


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", "", '"text"'])
def test_tool_call_arguments_not_an_object_become_empty_input(arguments: str) -> None:
    """A replayed assistant tool call whose arguments are not a JSON object is sent as an
    empty input (the Messages API requires an object), on Anthropic and Gemini alike."""
    from asyncprov.providers.gemini import _map_request as gemini_request

    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    body = request(messages=messages)
    assert body["messages"][1]["content"] == [  # type: ignore[index]
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    ]
    gemini = gemini_request(build_request(model="gemini-x", messages=messages, stream=True))
    assert gemini["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]
