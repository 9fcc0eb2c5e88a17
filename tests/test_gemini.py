"""Google's Gemini: the mapping both ways, and calls against a local server speaking
the Generative Language API (streams, tools, errors, cut streams)."""

from __future__ import annotations

import json

import pytest

from asyncprov import (
    AsyncClient,
    Client,
    InternalServerError,
    RateLimitError,
    StreamInterruptedError,
)
from asyncprov._request import build_request
from asyncprov.providers import Gemini
from asyncprov.providers.gemini import _map_request
from asyncprov.testing import GeminiTestServer, Reply

TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}


def test_request_mapping() -> None:
    """System to systemInstruction, user/assistant to user/model contents with parts,
    images to inlineData, options to generationConfig, tools to functionDeclarations,
    a JSON schema response format to responseJsonSchema."""
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
            ],
        },
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "sure?"},
    ]
    schema = {"type": "object", "properties": {"animal": {"type": "string"}}}
    request = build_request(
        model="gemini-2.0-flash", messages=messages, stream=True, temperature=0.3,
        max_tokens=50, stop=["END"], tools=[TOOL], tool_choice="required",
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )  # fmt: skip
    body = _map_request(request)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}
    }
    assert body["generationConfig"] == {
        "temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["END"],
        "responseMimeType": "application/json", "responseJsonSchema": schema,
    }  # fmt: skip
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_a_stream_through_the_client() -> None:
    """Text, the finish reason and usage from CRLF-framed SSE; the key header is sent."""
    async with GeminiTestServer(replies=["Hello from Gemini."]) as server:
        provider = Gemini(api_key="gem-key-123456", base_url=server.base_url)
        async with AsyncClient(provider) as client:
            stream = await client.chat.completions.create(
                messages="hi", stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Gemini." and {c.provider for c in chunks} == {"Gemini"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    sent = server.requests[-1]
    assert sent.headers["x-goog-api-key"] == "gem-key-123456"
    assert sent.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}


async def test_a_function_call_becomes_tool_calls() -> None:
    """A functionCall part is an OpenAI tool call; finish_reason "tool_calls"."""
    call = {"id": "x", "name": "weather", "arguments": '{"city": "Rome"}'}
    async with (
        GeminiTestServer(replies=[Reply(content="", tool_calls=[call])]) as server,
        AsyncClient(Gemini(api_key="k", base_url=server.base_url)) as client,
    ):
        reply = await client.chat.completions.create(messages="weather?", tools=[TOOL])
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Rome"}


async def test_errors_and_cut_streams() -> None:
    """429 RESOURCE_EXHAUSTED is a RateLimitError, 503 an InternalServerError; a stream
    that ends without a finishReason is interrupted."""
    async with GeminiTestServer() as server:
        provider = Gemini(api_key="k", base_url=server.base_url)
        async with AsyncClient(provider, max_retries=0) as client:
            server.add_reply(
                Reply(
                    status=429,
                    error={"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"},
                )
            )
            with pytest.raises(RateLimitError) as caught:
                await client.chat.completions.create(messages="hi")
            assert caught.value.message == "quota"
            server.add_reply(
                Reply(status=503, error={"code": 503, "message": "busy", "status": "UNAVAILABLE"})
            )
            with pytest.raises(InternalServerError):
                await client.chat.completions.create(messages="hi")
            server.add_reply(Reply(content="a b c", fault="no_done", fault_after=1))
            with pytest.raises(StreamInterruptedError, match="finishReason"):
                await client.chat.completions.create(messages="hi")


def test_the_sync_client_and_the_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client(provider="Gemini") reads GOOGLE_API_KEY when GEMINI_API_KEY is unset."""
    server = GeminiTestServer(api_key="google-key-123456")
    with server.run_in_thread():
        monkeypatch.setenv("GOOGLE_API_KEY", "google-key-123456")
        monkeypatch.setenv("GEMINI_BASE_URL", server.base_url)
        with Client(provider="Gemini") as client:
            reply = client.chat.completions.create(messages="hello")
    assert reply.choices[0].message.content == "You said: hello"


def test_a_function_call_stream_split_at_every_byte() -> None:
    """The server's stream (CRLF framed) cut into two reads at every byte offset gives
    the same text, function call and finish reason."""
    from asyncprov._sse import SSEDecoder
    from asyncprov.providers.gemini import _Stream

    call = {"id": "x", "name": "weather", "arguments": '{"city": "Lima"}'}
    server = GeminiTestServer()
    reply = Reply(content="Looking it up.", tool_calls=[call])
    body = b"".join(server.render_events({"contents": []}, reply))
    for cut in range(len(body) + 1):
        decoder, state = SSEDecoder(), _Stream("Gemini", "m")
        text, calls, finish = "", [], None
        for part in (body[:cut], body[cut:]):
            for event in decoder.feed(part) if part else []:
                chunk = state.event(event.data)
                delta = chunk.choices[0].delta
                text += delta.content or ""
                calls += [
                    (c.function.name, c.function.arguments)
                    for c in delta.tool_calls or []
                    if c.function
                ]
                finish = chunk.choices[0].finish_reason or finish
        assert (text, calls, finish) == (
            "Looking it up.", [("weather", '{"city": "Lima"}')], "tool_calls",
        ), cut  # fmt: skip


def _gemini_event(
    parts: list[dict[str, object]], compact: bool, usage: object = None, **more: object
) -> bytes:
    candidate = {"content": {"role": "model", "parts": parts}, **more}
    body = {"candidates": [candidate], "modelVersion": "gemini-x", "responseId": "r-1"}
    if usage is not None:
        body["usageMetadata"] = usage
    return json.dumps(body, separators=(",", ":") if compact else (",", ": ")).encode()


TEXTS = ['say "hi"', "ends in a backslash \\", 'a "}] inside', "é 世界 🙂", '\\"', "x"]


@pytest.mark.parametrize("compact", [False, True])
def test_fast_text_events_give_the_chunks_of_the_full_parse(compact: bool) -> None:
    """Text events take a fast way (the JSON string spliced into the chunk); every event
    shape, including near-misses of the fast one, gives the chunks a full parse gives,
    and the usage of the last event that carried one."""
    from asyncprov.providers.base import json_event
    from asyncprov.providers.gemini import _Stream

    usage = {"promptTokenCount": 3, "candidatesTokenCount": 5, "totalTokenCount": 8}
    events = [_gemini_event([{"text": "first"}], compact)]
    events += [_gemini_event([{"text": text}], compact) for text in TEXTS]
    events += [
        _gemini_event([{"text": "u"}], compact, usage={"promptTokenCount": 3}),
        _gemini_event([{"text": "v"}], compact, usage=usage),
        json.dumps({"candidates": [{"content": {"parts": [{"text": "no role"}]}}]}).encode(),
        _gemini_event([{"text": ""}], compact),
        _gemini_event([{"text": "thinking", "thought": True}], compact),
        _gemini_event([{"text": "a"}, {"text": "b"}], compact),
        _gemini_event([{"text": "r", "thoughtSignature": "c2ln"}], compact),
        _gemini_event([{"functionCall": {"name": "f", "args": {"q": 1}}}], compact),
        json.dumps({"candidates": [{"index": 0, "content": {"parts": [{"text": "w"}]}}]}).encode(),
        _gemini_event([{"text": "end"}], compact, finishReason="STOP"),
    ]  # fmt: skip
    fast, full = _Stream("Gemini", "m"), _Stream("Gemini", "m")
    full.created = fast.created
    taken = 0
    for data in events:
        taken += fast.text_chunk(data) is not None if fast.text_head else 0
        got, expected = fast.event(data), full.process(json_event(data))
        assert got.model_dump() == expected.model_dump(), data
        assert got.provider == expected.provider == "Gemini"
    # The events laid out like the first took the fast way (two with usage), but for the
    # text holding an escaped '"}]'; the other layouts took the long way.
    assert taken == len(TEXTS) - 1 + 2
    assert fast.final_usage().model_dump() == full.final_usage().model_dump()
    # A key named usageMetadata elsewhere than the top level holds no usage to take.
    fast.event(_gemini_event([{"text": "n"}], compact, extra={"usageMetadata": 1}))
    assert fast.final_usage().usage == full.final_usage().usage


def test_key_variables_in_order_with_the_same_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMINI_API_KEY wins over GOOGLE_API_KEY; a key from either is stripped and one
    with a line break is refused, as every provider's key is."""
    from asyncprov import ConfigurationError

    monkeypatch.setenv("GOOGLE_API_KEY", "google-key\n")
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    assert Gemini().get_api_key() == "google-key"
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    assert Gemini().get_api_key() == "gemini-key"
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "google\nkey")
    with pytest.raises(ConfigurationError, match="line break"):
        Gemini().get_api_key()
