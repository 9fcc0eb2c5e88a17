"""Tests for the public data models in ``asyncprov._types`` and ``build_request``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from asyncprov import InvalidRequestError
from asyncprov._request import build_request
from asyncprov._types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ImagePart,
    ImageURL,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

# Chunks as OpenAI sends them (gpt-4o-mini, stream_options.include_usage=true).
ROLE_CHUNK = (
    '{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,'
    '"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    '"system_fingerprint":"fp_f85bea6784","choices":[{"index":0,"delta":{"role":"assistant",'
    '"content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,'
    '"obfuscation":"x1y2"}'
)
CONTENT_CHUNK = (
    '{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,'
    '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f85bea6784",'
    '"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],'
    '"usage":null}'
)
TOOL_CHUNK = (
    '{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,'
    '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f85bea6784",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":'
    '[{"index":0,"id":"call_Qx9","type":"function","function":{"name":"get_weather",'
    '"arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}'
)
USAGE_CHUNK = (
    '{"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,'
    '"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_f85bea6784","choices":[],'
    '"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,'
    '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    '"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}'
)


# --- response models ----------------------------------------------------------------------


def test_chunk_ignores_unknown_fields_at_every_level() -> None:
    """Unknown keys on the chunk, choice, delta, tool call, function and usage are ignored."""
    raw = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "new_top": {"a": 1},
        "choices": [
            {
                "index": 0,
                "new_choice": [1, 2],
                "logprobs": {"content": []},
                "finish_reason": None,
                "delta": {
                    "content": "hi",
                    "new_delta": True,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "new_tool": "x",
                            "function": {"name": "f", "arguments": "{}", "new_fn": 3},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "new_u": {}},
    }
    chunk = ChatCompletionChunk.model_validate_json(json.dumps(raw))
    assert chunk == ChatCompletionChunk(
        id="c1",
        created=5,
        model="m",
        choices=[
            ChunkChoice(
                index=0,
                logprobs={"content": []},
                delta=Delta(
                    content="hi",
                    tool_calls=[
                        ToolCallDelta(
                            index=0,
                            id="call_1",
                            function=FunctionCallDelta(name="f", arguments="{}"),
                        )
                    ],
                ),
            )
        ],
        usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    dumped = chunk.model_dump()
    assert "new_top" not in dumped
    assert "new_choice" not in dumped["choices"][0]
    assert "new_delta" not in dumped["choices"][0]["delta"]


def test_completion_ignores_unknown_fields() -> None:
    """A whole completion with unknown keys on every level parses."""
    raw = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "ok", "annotations": []},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "x": {}},
    }
    completion = ChatCompletion.model_validate_json(json.dumps(raw))
    assert completion.choices[0].message.content == "ok"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage == Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)


def test_parse_openai_role_chunk() -> None:
    """OpenAI's first chunk gives the role, empty content and the stream's metadata."""
    chunk = ChatCompletionChunk.model_validate_json(ROLE_CHUNK)
    assert chunk.id == "chatcmpl-AbC123"
    assert chunk.object == "chat.completion.chunk"
    assert chunk.created == 1727000000
    assert chunk.model == "gpt-4o-mini-2024-07-18"
    assert chunk.system_fingerprint == "fp_f85bea6784"
    assert chunk.usage is None
    assert chunk.provider is None
    assert chunk.choices == [
        ChunkChoice(index=0, delta=Delta(role="assistant", content=""), finish_reason=None)
    ]


def test_parse_openai_content_chunk() -> None:
    """A content chunk carries the delta text."""
    chunk = ChatCompletionChunk.model_validate_json(CONTENT_CHUNK)
    assert chunk.choices == [ChunkChoice(index=0, delta=Delta(content="Hello"))]


def test_parse_openai_tool_call_chunk() -> None:
    """A tool-call delta chunk carries index, id, type and the function fragment."""
    chunk = ChatCompletionChunk.model_validate_json(TOOL_CHUNK)
    delta = chunk.choices[0].delta
    assert delta.content is None
    assert delta.tool_calls == [
        ToolCallDelta(
            index=0,
            id="call_Qx9",
            type="function",
            function=FunctionCallDelta(name="get_weather", arguments=""),
        )
    ]


def test_parse_openai_usage_chunk() -> None:
    """The usage chunk has no choices, the token counts and their details."""
    chunk = ChatCompletionChunk.model_validate_json(USAGE_CHUNK)
    assert chunk.choices == []
    assert chunk.usage is not None
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (9, 12)
    assert chunk.usage.total_tokens == 21
    assert chunk.usage.prompt_tokens_details == {"cached_tokens": 0, "audio_tokens": 0}
    assert chunk.usage.completion_tokens_details is not None
    assert chunk.usage.completion_tokens_details["reasoning_tokens"] == 0


def _chunk(delta: dict[str, Any] | None = None, **choice: Any) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {"choices": [{"index": 0, "delta": delta or {}, **choice}]}
    )


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        (_chunk({"role": "assistant"}), False),
        (_chunk({"role": "assistant", "content": ""}), False),
        (_chunk({"content": ""}), False),
        (_chunk({}), False),
        (_chunk({"content": None}, finish_reason=None), False),
        (ChatCompletionChunk(choices=[]), False),
        (ChatCompletionChunk.model_validate_json(ROLE_CHUNK), False),
        (_chunk({"content": "a"}), True),
        (_chunk({"content": " "}), True),
        (ChatCompletionChunk.model_validate_json(CONTENT_CHUNK), True),
        (ChatCompletionChunk.model_validate_json(TOOL_CHUNK), True),
        (_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}), True),
        (_chunk({}, finish_reason="stop"), True),
        (_chunk({}, finish_reason="length"), True),
        (ChatCompletionChunk.model_validate_json(USAGE_CHUNK), True),
        (ChatCompletionChunk(choices=[], usage=Usage()), True),
        (_chunk({"reasoning_content": "thinking"}), True),
        (_chunk({"refusal": "no"}), True),
    ],
)
def test_is_progress(chunk: ChatCompletionChunk, expected: bool) -> None:
    """Only text, tool calls, reasoning, refusals, a finish reason or usage count as progress."""
    assert chunk.is_progress() is expected


def test_is_progress_any_choice() -> None:
    """Content in a later choice is progress even when the first choice is empty."""
    chunk = ChatCompletionChunk.model_validate(
        {"choices": [{"index": 0, "delta": {}}, {"index": 1, "delta": {"content": "b"}}]}
    )
    assert chunk.is_progress() is True


# --- request models -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool"])
def test_message_roles_accepted(role: str) -> None:
    """Every OpenAI role is accepted with string content."""
    extra = {"tool_call_id": "call_1"} if role == "tool" else {}
    message = ChatMessage.model_validate({"role": role, "content": "hi", **extra})
    assert message.role == role
    assert message.content == "hi"
    assert message.text() == "hi"


def test_message_unknown_role_rejected() -> None:
    """An unknown role is rejected."""
    with pytest.raises(ValidationError) as info:
        ChatMessage.model_validate({"role": "robot", "content": "hi"})
    assert [e["loc"] for e in info.value.errors()] == [("role",)]


@pytest.mark.parametrize("role", ["user", "system", "developer", "assistant", "tool"])
def test_message_without_content_rejected(role: str) -> None:
    """A message with no content (and no tool calls) is rejected."""
    with pytest.raises(ValidationError, match=f"a '{role}' message needs 'content'"):
        ChatMessage.model_validate({"role": role, "tool_call_id": "call_1"})


def test_assistant_with_tool_calls_needs_no_content() -> None:
    """An assistant message with tool_calls and no content is valid."""
    message = ChatMessage.model_validate(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        }
    )
    assert message.content is None
    assert message.tool_calls is not None
    assert message.tool_calls[0].id == "call_1"
    assert message.tool_calls[0].function.name == "get_weather"
    assert message.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert message.text() == ""


def test_assistant_with_empty_tool_calls_needs_content() -> None:
    """An empty tool_calls list does not excuse an assistant message from content."""
    with pytest.raises(ValidationError, match="a 'assistant' message needs 'content'"):
        ChatMessage.model_validate({"role": "assistant", "tool_calls": []})


@pytest.mark.parametrize("tool_call_id", [None, ""])
def test_tool_message_needs_tool_call_id(tool_call_id: str | None) -> None:
    """A tool message without a tool_call_id is rejected."""
    with pytest.raises(ValidationError, match="a 'tool' message needs 'tool_call_id'"):
        ChatMessage.model_validate({"role": "tool", "content": "22C", "tool_call_id": tool_call_id})


def test_message_keeps_unknown_fields() -> None:
    """Unknown message keys are kept so they can be sent on."""
    message = ChatMessage.model_validate({"role": "user", "content": "hi", "cache": "x"})
    assert message.model_dump(exclude_none=True) == {"role": "user", "content": "hi", "cache": "x"}


def test_content_parts_text_and_image() -> None:
    """Text parts and image_url parts (object and bare-string forms) are parsed."""
    message = ChatMessage.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is "},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": "https://x.test/b.png"},
                {"type": "text", "text": "this?"},
            ],
        }
    )
    assert message.content == [
        TextPart(text="What is "),
        ImagePart(image_url=ImageURL(url="https://x.test/a.png", detail="low")),
        ImagePart(image_url=ImageURL(url="https://x.test/b.png")),
        TextPart(text="this?"),
    ]
    assert message.text() == "What is this?"


def test_image_part_bare_string_normalised() -> None:
    """A bare-string image_url is normalised to ``{"url": ...}``."""
    part = ImagePart.model_validate({"type": "image_url", "image_url": "data:image/png;base64,AA"})
    assert part.model_dump(exclude_none=True) == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AA"},
    }


@pytest.mark.parametrize(
    "part",
    [
        {"type": "video_url", "video_url": {"url": "https://x.test/v.mp4"}},
        {"type": 3, "text": "x"},
        {"text": "no type"},
        "just a string",
    ],
)
def test_unknown_content_part_rejected(part: Any) -> None:
    """A content part of unknown (or missing) type is rejected."""
    with pytest.raises(ValidationError):
        ChatMessage.model_validate({"role": "user", "content": [part]})


def test_image_part_bad_detail_rejected() -> None:
    """An image detail other than auto/low/high is rejected."""
    with pytest.raises(ValidationError):
        ImagePart.model_validate({"image_url": {"url": "https://x.test/a.png", "detail": "max"}})


def test_chat_request_rejects_empty_messages() -> None:
    """A request needs at least one message."""
    with pytest.raises(ValidationError) as info:
        ChatRequest(model="m", messages=[])
    assert [e["loc"] for e in info.value.errors()] == [("messages",)]


def test_chat_request_rejects_unknown_field() -> None:
    """ChatRequest forbids unknown top-level fields (they belong in ``extra``)."""
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "bogus": 1}
        )


def test_chat_request_has_images() -> None:
    """has_images is true only when some message has an image part."""
    text_only = ChatRequest(model="m", messages=[ChatMessage(role="user", content="hi")])
    with_image = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/a"}]}
            ],
        }
    )
    assert text_only.has_images() is False
    assert with_image.has_images() is True


def test_tool_call_defaults() -> None:
    """A ToolCall is always of type function."""
    assert ToolCall().type == "function"


# --- build_request ------------------------------------------------------------------------


def test_build_request_string_becomes_user_message() -> None:
    """A string for messages becomes one user message."""
    request = build_request(model="gpt-4o", messages="hi", stream=False)
    assert request.model == "gpt-4o"
    assert request.stream is False
    assert request.messages == [ChatMessage(role="user", content="hi")]


def test_build_request_drops_none_options() -> None:
    """Options passed as None are left at their defaults; others are set."""
    request = build_request(
        model="m", messages="hi", stream=True, temperature=None, max_tokens=5, seed=None
    )
    assert request.stream is True
    assert request.temperature is None
    assert request.max_tokens == 5
    assert request.seed is None


def test_build_request_requires_messages() -> None:
    """messages=None raises InvalidRequestError."""
    with pytest.raises(InvalidRequestError, match="messages is required"):
        build_request(model="m", messages=None, stream=False)


@pytest.mark.parametrize(
    ("messages", "fields", "path", "secret"),
    [
        ([{"role": "rolezzz", "content": "hi"}], {}, "messages.0.role", "rolezzz"),
        (
            [{"role": "user", "content": "ok"}, {"role": "user", "content": 98765}],
            {},
            "messages.1.content",
            "98765",
        ),
        (
            [{"role": "user", "content": [{"type": "videozzz", "src": "srczzz"}]}],
            {},
            "messages.0.content",
            "zzz",
        ),
        (
            [{"role": "tool", "content": "contentzzz"}],
            {},
            "messages.0: a 'tool' message needs 'tool_call_id'",
            "contentzzz",
        ),
        ([], {}, "messages", "[]"),
        ("hi", {"temperature": "hotzzz"}, "temperature", "hotzzz"),
        ("hi", {"max_tokens": "manyzzz"}, "max_tokens", "manyzzz"),
    ],
)
def test_build_request_invalid(
    messages: Any, fields: dict[str, Any], path: str, secret: str
) -> None:
    """Bad input raises InvalidRequestError naming the field path, never echoing the input."""
    with pytest.raises(InvalidRequestError) as info:
        build_request(model="m", messages=messages, stream=False, **fields)
    exc = info.value
    assert not isinstance(exc, ValidationError)
    assert exc.__cause__ is None
    message = str(exc)
    assert message.startswith("invalid request: ")
    assert path in message
    assert secret not in message
    assert secret not in repr(exc)


def test_build_request_error_count_is_capped() -> None:
    """At most three problems are listed; the rest are counted."""
    bad = [{"role": f"rolezzz{i}", "content": "x"} for i in range(5)]
    with pytest.raises(InvalidRequestError) as info:
        build_request(model="m", messages=bad, stream=False)
    message = str(info.value)
    assert message.count("messages.") == 3
    assert message.endswith(" (and 2 more)")
    assert "rolezzz" not in message
