"""Tests for folding a stream of chunks into a completion (``asyncprov._accumulate``)."""

from __future__ import annotations

from typing import Any

import pytest

from asyncprov._accumulate import CompletionAccumulator
from asyncprov._types import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)


def chunk(*choices: dict[str, Any], **top: Any) -> ChatCompletionChunk:
    """A chunk from plain dicts; each choice dict is ``{"index", "delta", "finish_reason"}``."""
    return ChatCompletionChunk.model_validate({"choices": list(choices), **top})


def delta(index: int = 0, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish_reason}


def fold(*chunks: ChatCompletionChunk, provider: str | None = None) -> ChatCompletion:
    acc = CompletionAccumulator()
    for c in chunks:
        acc.add(c)
    return acc.completion(provider=provider)


def test_content_is_concatenated() -> None:
    """Content deltas of one choice are joined in order."""
    completion = fold(
        chunk(delta(role="assistant", content="")),
        chunk(delta(content="Hel")),
        chunk(delta(content="lo, ")),
        chunk(delta()),
        chunk(delta(content="world")),
        chunk(delta(finish_reason="stop")),
    )
    assert completion.choices == [
        Choice(index=0, message=Message(content="Hello, world"), finish_reason="stop")
    ]


def test_multiple_choices_by_index() -> None:
    """Choices are folded by index, in index order, whatever order they arrive in."""
    completion = fold(
        chunk(delta(1, content="B1"), delta(0, content="A1")),
        chunk(delta(0, content="A2")),
        chunk(delta(1, content="B2", finish_reason="length")),
        chunk(delta(0, finish_reason="stop")),
    )
    assert completion.choices == [
        Choice(index=0, message=Message(content="A1A2"), finish_reason="stop"),
        Choice(index=1, message=Message(content="B1B2"), finish_reason="length"),
    ]


def test_tool_call_fragments_joined() -> None:
    """Tool-call fragments join by index: id, name and arguments are concatenated."""
    completion = fold(
        chunk(delta(role="assistant", content=None)),
        chunk(
            delta(
                tool_calls=[
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            )
        ),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}])),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}])),
        chunk(delta(finish_reason="tool_calls")),
    )
    assert completion.choices == [
        Choice(
            index=0,
            message=Message(
                content=None,
                tool_calls=[
                    ToolCall(
                        id="call_1",
                        function=FunctionCall(name="get_weather", arguments='{"city":"Oslo"}'),
                    )
                ],
            ),
            finish_reason="tool_calls",
        )
    ]


def test_two_parallel_tool_calls() -> None:
    """Interleaved fragments of two parallel tool calls end up as two calls, by index."""
    completion = fold(
        chunk(
            delta(
                tool_calls=[
                    {"index": 1, "id": "call_B", "function": {"name": "time", "arguments": ""}},
                ]
            )
        ),
        chunk(
            delta(
                tool_calls=[
                    {"index": 0, "id": "call_A", "function": {"name": "weather", "arguments": "{"}},
                    {"index": 1, "function": {"arguments": '{"tz":'}},
                ]
            )
        ),
        chunk(delta(tool_calls=[{"index": 0, "function": {"arguments": "}"}}])),
        chunk(delta(tool_calls=[{"index": 1, "function": {"arguments": '"UTC"}'}}])),
        chunk(delta(finish_reason="tool_calls")),
    )
    message = completion.choices[0].message
    assert message.content is None
    assert message.tool_calls == [
        ToolCall(id="call_A", function=FunctionCall(name="weather", arguments="{}")),
        ToolCall(id="call_B", function=FunctionCall(name="time", arguments='{"tz":"UTC"}')),
    ]


def test_content_and_tool_calls_together() -> None:
    """Text sent before a tool call is kept next to the call."""
    completion = fold(
        chunk(delta(content="Let me check.")),
        chunk(delta(tool_calls=[{"index": 0, "id": "c", "function": {"name": "f"}}])),
    )
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls == [ToolCall(id="c", function=FunctionCall(name="f"))]


def test_reasoning_and_refusal() -> None:
    """reasoning_content and refusal deltas are concatenated onto the message."""
    completion = fold(
        chunk(delta(reasoning_content="Think")),
        chunk(delta(reasoning_content="ing.")),
        chunk(delta(content="Answer")),
        chunk(delta(refusal="No")),
        chunk(delta(refusal=" way", finish_reason="stop")),
    )
    assert completion.choices[0].message == Message(
        content="Answer", reasoning_content="Thinking.", refusal="No way"
    )


def test_no_reasoning_is_none() -> None:
    """Without reasoning or refusal deltas those fields stay None."""
    message = fold(chunk(delta(content="x"))).choices[0].message
    assert message.reasoning_content is None
    assert message.refusal is None
    assert message.tool_calls is None


def test_usage_from_usage_chunk() -> None:
    """Usage comes from the usage chunk (empty choices), which adds no choice."""
    completion = fold(
        chunk(delta(content="hi", finish_reason="stop")),
        chunk(usage={"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}),
    )
    assert completion.usage == Usage(prompt_tokens=9, completion_tokens=12, total_tokens=21)
    assert len(completion.choices) == 1


def test_no_usage_is_none() -> None:
    """Without a usage chunk, usage is None (not zeros)."""
    assert fold(chunk(delta(content="hi"))).usage is None


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([None, None, None], None),
        ([None, "stop", None], "stop"),
        ([None, "length", "stop"], "stop"),
        (["stop", None, None], "stop"),
    ],
)
def test_finish_reason(reasons: list[str | None], expected: str | None) -> None:
    """finish_reason is the last one that arrived, and None when none did (never invented)."""
    completion = fold(*(chunk(delta(content="x", finish_reason=r)) for r in reasons))
    assert completion.choices[0].finish_reason == expected


def test_metadata_from_first_chunk() -> None:
    """id, created, model, system_fingerprint and provider come from the first chunk."""
    completion = fold(
        chunk(
            delta(content="a"),
            id="chatcmpl-1",
            created=111,
            model="gpt-4o",
            system_fingerprint="fp_1",
            provider="OpenaiChat",
        ),
        chunk(
            delta(content="b"),
            id="chatcmpl-2",
            created=222,
            model="gpt-4o-other",
            system_fingerprint="fp_2",
            provider="Other",
        ),
    )
    assert completion.id == "chatcmpl-1"
    assert completion.created == 111
    assert completion.model == "gpt-4o"
    assert completion.system_fingerprint == "fp_1"
    assert completion.provider == "OpenaiChat"
    assert completion.object == "chat.completion"


def test_provider_override() -> None:
    """completion(provider=...) overrides the chunks' provider."""
    completion = fold(chunk(delta(content="a"), provider="Inner"), provider="RetryProvider")
    assert completion.provider == "RetryProvider"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([], ""),
        ([chunk(delta(content="a")), chunk(delta(content="b"))], "ab"),
        ([chunk(delta(1, content="one")), chunk(delta(0, content="zero"))], "zero"),
        ([chunk(delta(2, content="two"))], "two"),
        ([chunk(delta(role="assistant"))], ""),
    ],
)
def test_text_property(chunks: list[ChatCompletionChunk], expected: str) -> None:
    """.text is the text so far of choice 0 (or the only choice seen)."""
    acc = CompletionAccumulator()
    for c in chunks:
        acc.add(c)
    assert acc.text == expected


def test_text_grows_while_streaming() -> None:
    """.text reflects each chunk as it is added."""
    acc = CompletionAccumulator()
    seen = []
    for piece in ["a", "", "bc", "d"]:
        acc.add(chunk(delta(content=piece)))
        seen.append(acc.text)
    assert seen == ["a", "a", "abc", "abcd"]


def test_empty_accumulator() -> None:
    """An accumulator with no chunks gives a completion with no choices and empty metadata."""
    assert CompletionAccumulator().completion() == ChatCompletion(
        id="", created=0, model="", choices=[], usage=None, system_fingerprint=None, provider=None
    )


def test_role_only_stream_gives_empty_content() -> None:
    """A choice that only ever got a role has empty-string content and no finish reason."""
    completion = fold(chunk(delta(role="assistant")))
    assert completion.choices == [Choice(index=0, message=Message(content=""), finish_reason=None)]
