"""What the gateway checks in a request and says back, in OpenAI's formats: the error
JSON, the body's field types, the status and words for each kind of failure, and the
SSE frames."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from .. import (
    APIConnectionError,
    APITimeoutError,
    AsyncProvError,
    ConfigurationError,
    HTTPStatusError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderNotFoundError,
    RetryProviderError,
    SharedStateError,
    StreamInterruptedError,
)

__all__ = [
    "SAYS",
    "body_problem",
    "closing",
    "error_event",
    "error_response",
    "event",
    "status_for",
]


def error_response(
    status: int, message: str, kind: str, code: str | None = None, *, param: str | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


def closing(response: web.Response) -> web.Response:
    """The response, and the connection closed after it (its body was not read)."""
    response.force_close()
    return response


class _ChatBody(BaseModel):
    """The types OpenAI checks in a chat request body (others pass through as sent)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = None
    messages: list[Any] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, Any] | None = None


def body_problem(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first field of ``body`` whose type OpenAI would refuse, as (field, message)."""
    try:
        _ChatBody.model_validate(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = str(error["loc"][0])
        return field, f"invalid type for {field!r}: {error['msg'].lower()}"
    return None


def status_for(error: AsyncProvError) -> int:
    """The HTTP status a gateway answers ``error`` with."""
    if isinstance(error, HTTPStatusError):
        return error.status
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, ModelNotFoundError | ProviderNotFoundError):
        return 404
    if isinstance(error, APITimeoutError):
        return 504
    if isinstance(error, APIConnectionError | RetryProviderError | StreamInterruptedError):
        return 502
    if isinstance(error, ConfigurationError):
        return 500
    if isinstance(error, SharedStateError):
        return 503  # the gateway's own limits cannot be checked: try again later
    return 502


SAYS = {
    "timeout_error": "the upstream provider did not answer in time",
    "rate_limit_error": "the upstream provider is rate limiting; try again later",
    "connection_error": "the upstream provider could not be reached",
    "proxy_error": "the upstream provider could not be reached",
    "server_error": "the upstream provider failed",
    "stream_interrupted_error": "the upstream stream broke off",
    "invalid_response_error": "the upstream provider answered in an unexpected format",
    "not_found_error": "the upstream provider does not serve this model",
    "invalid_request_error": "the upstream provider rejected the request",
    "permission_error": "the upstream provider refused the request",
    "configuration_error": "the gateway is not configured for this request",
    "shared_state_error": "the gateway cannot check its rate limits now; try again later",
}
"""What a client is told for each kind of failure: no upstream text, host or name."""


def event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


def error_event(message: str, kind: str, status: int) -> bytes:
    return event(json.dumps({"error": {"message": message, "type": kind, "code": status}}))
