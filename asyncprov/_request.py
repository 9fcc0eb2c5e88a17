"""What ``create()`` takes, written once: its keywords (one ``TypedDict`` used with
``Unpack`` by the async and sync twins and every overload), and the validation of a
call's arguments into a ``ChatRequest``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict, cast

from pydantic import ValidationError

from ._errors import InvalidRequestError
from ._types import ChatRequest, ImagePart, ImageURL, MessageInput, TextPart

if TYPE_CHECKING:
    from ._images import ImageInput
    from ._registry import ProviderInput
    from ._timeouts import TimeoutInput

__all__ = [
    "CALL_SETTINGS",
    "CallSettings",
    "CreateOptions",
    "MessagesInput",
    "ParseOptions",
    "attach_images",
    "build_request",
    "take_settings",
]

MessagesInput: TypeAlias = str | Sequence[MessageInput]
"""A conversation: a list of messages, or a plain string as one user message."""


class CallSettings(TypedDict, total=False):
    """``create()`` keywords that configure the call itself (where it goes, with which
    key, how long it waits and how often it tries) rather than the request body."""

    provider: ProviderInput | None
    """Overrides the client's provider for this call."""
    image: ImageInput | None
    """One image (bytes, path, open binary file, ``data:`` URI or http(s) URL) added to
    the last user message."""
    images: Iterable[ImageInput] | None
    """Several images, likewise."""
    proxy: str | None
    """A proxy URL for this call only."""
    api_key: str | None
    """A key for this call only."""
    base_url: str | None
    """Another API root for this call only."""
    timeout: TimeoutInput
    """A ``Timeout``, or a number of seconds for the whole call."""
    max_retries: int | None
    """Retries after the first attempt (a lone provider; a group keeps its own)."""
    hedge_delay: float | None
    """With a ``RetryProvider``: start the next candidate when the current one has shown
    no content for this long."""
    extra_headers: Mapping[str, str] | None
    """HTTP headers for this call, over the provider's and the client's."""
    extra_query: Mapping[str, str] | None
    """Query parameters added to the request URL."""
    extra_body: Mapping[str, Any] | None
    """Fields merged, last, into the JSON body."""


class _Fields(TypedDict, total=False):
    """The OpenAI body fields ``create()`` and ``parse()`` type alike."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    max_completion_tokens: int | None
    stop: str | list[str] | None
    seed: int | None
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    stream_options: dict[str, Any] | None
    """``{"include_usage": True}`` adds a last chunk with the ``usage``."""
    n: int | None
    user: str | None
    logprobs: bool | None
    top_logprobs: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[str, int] | None
    parallel_tool_calls: bool | None
    metadata: dict[str, str] | None
    reasoning_effort: str | None


class BodyOptions(_Fields, total=False):
    """The OpenAI body fields ``create()`` types; others may be passed as keywords too
    (sent as they are) or in ``extra_body``."""

    response_format: dict[str, Any] | None


class CreateOptions(CallSettings, BodyOptions, total=False):
    """Every keyword of ``create()`` besides ``model``, ``messages`` and ``stream``."""


class ParseOptions(CallSettings, _Fields, total=False):
    """Every keyword of ``parse()`` besides ``model``, ``messages`` and
    ``response_format`` (a pydantic model there)."""


CALL_SETTINGS: frozenset[str] = frozenset(CallSettings.__optional_keys__)
"""``create()`` keywords that configure the call rather than the body: a request body
from elsewhere (a gateway client, a batch file) must never set them."""

_NO_SETTINGS = cast(CallSettings, MappingProxyType({}))


def take_settings(options: dict[str, Any]) -> CallSettings:
    """The call's settings taken out of ``create()``'s keywords (the rest are body
    fields); a call given none shares one empty, read-only mapping."""
    if not options:
        return _NO_SETTINGS
    return cast(
        CallSettings, {key: options.pop(key) for key in CALL_SETTINGS.intersection(options)}
    )


_REQUEST_FIELDS = frozenset(ChatRequest.model_fields) - {"model", "messages", "stream", "extra"}


@functools.cache
def _request_validator() -> Callable[[Any], ChatRequest]:
    """``ChatRequest.model_validate`` without pydantic's per-call wrapper (every call
    validates its request); the schema is built on first use."""
    ChatRequest.model_rebuild()
    return ChatRequest.__pydantic_validator__.validate_python


def build_request(
    *, model: str, messages: MessagesInput | None, stream: bool, **fields: Any
) -> ChatRequest:
    """Validate the caller's arguments (body fields only) into a ``ChatRequest``;
    fields it has no place for go to ``extra``, sent as they are."""
    if messages is None:
        raise InvalidRequestError("messages is required: a string or a list of messages")
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    options: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key == "stream_options":
            options["include_usage"] = bool((value or {}).get("include_usage"))
        elif key in _REQUEST_FIELDS:
            options[key] = value
        else:
            extra[key] = value
    if extra:
        options["extra"] = extra
    try:
        data = {"model": model, "messages": messages, "stream": stream, **options}
        return _request_validator()(data)
    except ValidationError as exc:
        raise InvalidRequestError.from_validation(exc) from None


def attach_images(request: ChatRequest, urls: list[str]) -> None:
    """Add image parts to the last user message."""
    for index in range(len(request.messages) - 1, -1, -1):
        message = request.messages[index]
        if message.role == "user":
            break
    else:
        raise InvalidRequestError("images need a user message to attach to")
    content = message.content
    parts: list[Any] = [TextPart(text=content)] if isinstance(content, str) else list(content or [])
    parts.extend(ImagePart(image_url=ImageURL(url=url)) for url in urls)
    request.messages[index] = message.model_copy(update={"content": parts})
