"""Public data: request messages, completions and chunks, shaped like OpenAI's.

Response models ignore unknown fields so new wire fields never break parsing; request
models validate what the caller passes and reject malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

__all__ = [
    "Attempt",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "FunctionCall",
    "FunctionCallDelta",
    "ImagePart",
    "ImageURL",
    "Message",
    "MessageInput",
    "Role",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]


# Validators are built on first use (defer_build), which keeps `import asyncprov` cheap.


class _Request(BaseModel):
    # Unknown keys are kept and sent on: OpenAI adds message fields over time.
    model_config = ConfigDict(extra="allow", defer_build=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


_M = TypeVar("_M", bound=BaseModel)


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """An instance of ``cls`` holding ``values``: our own, already valid, one for every
    field. What ``model_construct`` does without its per-call bookkeeping, for records
    made once per request (an attempt, a batch result)."""
    instance = object.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(instance, "__dict__", values)
    setattr_(instance, "__pydantic_fields_set__", set(values))
    setattr_(instance, "__pydantic_extra__", None)
    setattr_(instance, "__pydantic_private__", None)
    return instance


# --- request side -----------------------------------------------------------------------


class TextPart(_Request):
    """A text part of a message's content."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Request):
    """Where an image part points: an http(s) URL or a ``data:`` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


def _image_url_from_string(value: Any) -> Any:
    # Reka's docs show the bare-string form {"image_url": "https://..."}; accept it.
    if isinstance(value, dict) and isinstance(value.get("image_url"), str):
        return {**value, "image_url": {"url": value["image_url"]}}
    return value


class ImagePart(_Request):
    """An image part of a message's content."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_url(cls, value: Any) -> Any:
        return _image_url_from_string(value)


class OtherPart(_Request):
    """A content part asyncprov passes through untouched (audio, files, refusals)."""

    type: Literal["input_audio", "file", "refusal"]


def _part_type(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


ContentPart: TypeAlias = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image_url")]
    | Annotated[OtherPart, Tag("input_audio")]
    | Annotated[OtherPart, Tag("file")]
    | Annotated[OtherPart, Tag("refusal")],
    Discriminator(
        _part_type,
        custom_error_type="invalid_content_part",
        custom_error_message=(
            "content part type must be 'text', 'image_url', 'input_audio', 'file' or 'refusal'"
        ),
    ),
]


class FunctionCall(_Response):
    """The function a tool call invokes, with its JSON arguments as a string."""

    name: str = ""
    arguments: str = ""


class ToolCall(_Response):
    """A complete tool call on an assistant message."""

    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall = Field(default_factory=FunctionCall)


class ChatMessage(_Request):
    """One message of a request's conversation."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_content(self) -> ChatMessage:
        if self.content is None:
            if self.role == "assistant" and self.tool_calls:
                return self
            raise ValueError(f"a {self.role!r} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs 'tool_call_id'")
        return self

    def text(self) -> str:
        """The message's text, joining text parts."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


MessageInput: TypeAlias = ChatMessage | Mapping[str, Any]
"""A message as a caller may pass it: a ``ChatMessage`` or a plain dict."""


class ChatRequest(BaseModel):
    """A normalized chat request, as a provider receives it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    include_usage: bool = False
    """Ask for a final usage chunk in a stream (``stream_options.include_usage``)."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Further body fields, passed through to OpenAI-shaped providers as they are."""

    def has_images(self) -> bool:
        """Whether any message carries an image part."""
        for message in self.messages:  # a plain loop: this runs for every call
            content = message.content
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, ImagePart):
                        return True
        return False


# --- response side ----------------------------------------------------------------------


class Usage(_Response):
    """Token counts for one completion."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class Message(_Response):
    """The assistant's message in a completion."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    parsed: Any = Field(default=None, exclude=True, repr=False)
    """With ``parse()``: the reply validated into the model asked for (never dumped)."""


class Choice(_Response):
    """One choice of a completion."""

    index: int = 0
    message: Message = Field(default_factory=Message)
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Attempt(BaseModel):
    """One try at a call: which provider, how long, and how it ended."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    provider: str
    """The provider tried."""
    ok: bool
    """Whether this attempt answered (at most one per call does)."""
    error_type: str | None = None
    """The error class name when it failed (``"Cancelled"``: it lost a hedge race)."""
    error: str | None = None
    """The error message when it failed."""
    seconds: float = 0.0
    """From the attempt's start until it answered or failed."""
    number: int = 1
    """The attempt's number on its provider (2 and up: a retry of that provider)."""
    reason: Literal["first", "retry", "failover", "hedge"] = "first"
    """Why it started: the call's first attempt, a retry of the same provider, a
    failover after another provider failed, or a hedge beside one still running."""
    waited: float = 0.0
    """Seconds waited before it started (a backoff or a ``Retry-After``)."""
    started_at: float = 0.0
    """When it started (``time.time()``)."""


class ChatCompletion(_Response):
    """A whole chat completion, as returned by a non-streaming call."""

    id: str = ""
    object: Literal["chat.completion"] = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    provider: str | None = None
    """Name of the provider that answered."""
    attempts: tuple[Attempt, ...] = Field(default=(), exclude=True, repr=False)
    """Every try this call made, in the order they ended (never serialized)."""


class FunctionCallDelta(_Response):
    """A fragment of a streamed function call."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Response):
    """A fragment of a streamed tool call; fragments with the same index join up."""

    index: int = 0
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(_Response):
    """What one stream chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None
    refusal: str | None = None


class ChunkChoice(_Response):
    """One choice of a stream chunk."""

    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(_Response):
    """One chunk of a streamed chat completion."""

    id: str = ""
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    provider: str | None = None
    """Name of the provider that answered."""

    def is_progress(self) -> bool:
        """Whether this chunk carries anything (text, tool call, finish, usage)."""
        if self.usage is not None:
            return True
        for choice in self.choices:
            delta = choice.delta
            if (
                choice.finish_reason
                or delta.content
                or delta.tool_calls
                or delta.reasoning_content
                or delta.refusal
            ):
                return True
        return False
