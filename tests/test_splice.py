"""The fast way for text events of Anthropic and Gemini streams (a learned layout, the
string spliced into the chunk's JSON): through the real stream loop, every event gives
the chunk the long way gives, and the fast way is taken where it should be."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asyncprov import AsyncClient, ChatCompletionChunk, StreamInterruptedError
from asyncprov.providers import Anthropic, Gemini
from asyncprov.providers._splice import TAKE_AFTER, TEXT_TAIL, TextEvents, text_head
from asyncprov.providers.anthropic import _Stream as AnthropicStream
from asyncprov.providers.base import json_event, validate_chunk_json
from asyncprov.providers.gemini import _Stream as GeminiStream
from asyncprov.testing import AnthropicTestServer, GeminiTestServer, Reply

# Plain strings take the fast way once learned (after TAKE_AFTER alike); the others (a
# quote, an escape, a backslash at the end, a unicode escape) must take the long way
# and still be right.
PLAIN = [f"p{i} " for i in range(TAKE_AFTER + 4)]
TEXTS = [*PLAIN, 'say \\"hi\\"', "d", "caf\\u00e9", "é 世界", "x\\\\", "e", "f"]


def _sse(events: list[tuple[str | None, bytes]]) -> bytes:
    out = b""
    for name, data in events:
        out += (f"event: {name}\n".encode() if name else b"") + b"data: " + data + b"\n\n"
    return out


def _anthropic_delta(inside: str, index: int = 0) -> bytes:
    head = '{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":"'
    return (head % index + inside + '"}}').encode()


def _anthropic_events(insides: list[str]) -> list[tuple[str | None, bytes]]:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x"}}
    events: list[tuple[str | None, bytes]] = [
        ("message_start", json.dumps(start).encode()),
        ("content_block_start", b'{"type":"content_block_start","index":0,'
         b'"content_block":{"type":"text","text":""}}'),
    ]  # fmt: skip
    events += [("content_block_delta", _anthropic_delta(inside)) for inside in insides]
    stop = (
        b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}'
    )
    return [*events, ("message_delta", stop), ("message_stop", b'{"type":"message_stop"}')]


def _gemini_event(inside: str, usage: int | None = None, finish: bool = False) -> bytes:
    event = '{"candidates":[{"content":{"role":"model","parts":[{"text":"' + inside + '"}]}'
    event += ',"finishReason":"STOP"' if finish else ""
    event += '}],"modelVersion":"gemini-x","responseId":"r-1"'
    if usage is not None:
        event += f',"usageMetadata":{{"promptTokenCount":3,"candidatesTokenCount":{usage}}}'
    return (event + "}").encode()


async def _stream(provider: Any, include_usage: bool = True) -> list[ChatCompletionChunk]:
    async with AsyncClient(provider, max_retries=0) as client:
        stream = await client.chat.completions.create(
            messages="hi", stream=True, stream_options={"include_usage": include_usage}
        )
        return [chunk async for chunk in stream]


def _dumps(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [chunk.model_dump(exclude={"created"}) for chunk in chunks]


async def test_anthropic_text_events_give_the_chunks_of_the_long_way() -> None:
    events = _anthropic_events(TEXTS)
    raw = Reply(raw=_sse(events), content_type="text/event-stream")
    async with AnthropicTestServer(replies=[raw]) as server:
        got = await _stream(Anthropic(api_key="k", base_url=server.base_url))
    state = AnthropicStream("Anthropic", "claude-3-5-haiku-latest", include_usage=True)
    expected = [c for _, data in events[:-1] if (c := state.process(json_event(data)))]
    expected.append(state.usage_chunk(*state.usage))
    assert _dumps(got) == _dumps(expected)
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    tricky = 'say "hi"dcaféé 世界x\\ef'
    assert text == "".join(PLAIN) + tricky and {c.provider for c in got} == {"Anthropic"}


async def test_gemini_usage_is_the_last_events_whichever_way_it_went() -> None:
    """Layouts differing only in their usage: the final usage is the last event's, even
    when a layout taken comes back after another."""
    usages = [1] * (TAKE_AFTER + 4) + [2, 2] + [1] * 3 + [3] * (TAKE_AFTER + 2) + [4]
    events = [_gemini_event(f"e{i} ", usage) for i, usage in enumerate(usages)]
    events += [_gemini_event(inside, 4) for inside in TEXTS] + [_gemini_event("", 4, True)]
    raw = Reply(raw=_sse([(None, data) for data in events]), content_type="text/event-stream")
    async with GeminiTestServer(replies=[raw]) as server:
        got = await _stream(Gemini(api_key="k", base_url=server.base_url))
    state = GeminiStream("Gemini", "gemini-2.0-flash")
    expected = [state.process(json_event(data)) for data in events] + [state.final_usage()]
    assert _dumps(got) == _dumps(expected)
    assert got[-1].usage is not None and got[-1].usage.completion_tokens == 4


@pytest.mark.parametrize(
    ("inside", "wire"),
    [("bad \xff byte", "anthropic"), ("bad \x01 control", "anthropic"),
     ("bad \xff byte", "gemini"), ("bad \x01 control", "gemini")],
)  # fmt: skip
async def test_a_malformed_event_in_the_learned_layout_is_a_typed_error(
    inside: str, wire: str
) -> None:
    """An event laid out like the text events before it but not valid JSON text is not
    spliced into a chunk: the long way reports it, as for any malformed event."""
    bad = inside.encode("latin-1")
    if wire == "anthropic":
        events = _anthropic_events(PLAIN)
        events.insert(
            len(PLAIN) + 2,
            ("content_block_delta", _anthropic_delta("").replace(b'""', b'"' + bad + b'"')),
        )
        server: Any = AnthropicTestServer(
            replies=[Reply(raw=_sse(events), content_type="text/event-stream")]
        )
        make: Any = Anthropic
    else:
        datas = [_gemini_event(t) for t in PLAIN]
        datas.append(_gemini_event("").replace(b'""', b'"' + bad + b'"'))
        datas.append(_gemini_event("", finish=True))
        body = _sse([(None, data) for data in datas])
        server = GeminiTestServer(replies=[Reply(raw=body, content_type="text/event-stream")])
        make = Gemini
    async with server:
        provider = make(api_key="k", base_url=server.base_url)
        with pytest.raises(StreamInterruptedError) as caught:
            await _stream(provider)
    assert caught.value.partial_text == "".join(PLAIN)


def test_a_layout_is_taken_after_events_in_a_row_and_set_aside_by_another() -> None:
    head = text_head("r", 1, "m")
    fast = TextEvents()
    first, other = _gemini_event("a", 1), _gemini_event("c", 2)
    start = first.index(b'"a"') + 1

    def learn(data: bytes, times: int = 1) -> None:
        for _ in range(times):
            fast.learn(data, start, start + 1, head)

    learn(first, TAKE_AFTER - 1)
    assert fast.match(first) is None  # not yet a long stream's layout
    learn(first)
    match = fast.match(_gemini_event("plain text", 1))
    assert match is not None and match[1] == b"plain text"
    chunk = validate_chunk_json(fast.head + match[1] + TEXT_TAIL)
    assert chunk.choices[0].delta.content == "plain text" and fast.head == head
    for not_plain in ('q\\"', "e\\n", "\x01", 'x","y":"z'):
        assert fast.match(_gemini_event(not_plain, 1)) is None, not_plain
    learn(first)  # one more of the layout parsed the long way (a string with an escape, say)
    assert fast.match(_gemini_event("d", 1)) is not None
    assert fast.match(other) is None  # another usage: another layout
    learn(other)  # parsed the long way: the layout taken before is set aside
    assert fast.match(_gemini_event("d", 1)) is None
    learn(first, TAKE_AFTER - 1)  # back to it: a row again
    assert fast.match(_gemini_event("d", 1)) is None
    learn(first)
    assert fast.match(_gemini_event("d", 1)) is not None
    fast.forget()  # an event of no layout parsed the long way
    assert fast.match(_gemini_event("d", 1)) is None
    learn(first)  # the layout it set aside (already compiled): taken again at once
    assert fast.match(_gemini_event("d", 1)) is not None
