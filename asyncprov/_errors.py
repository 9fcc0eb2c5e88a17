"""Every exception asyncprov raises, under one root.

No aiohttp, json or pydantic exception reaches the caller: each boundary translates
them here, keeping the original as ``__cause__`` (except request validation, which
drops pydantic's error so the caller's input is not echoed). Secrets never appear in
a message.

When every attempt of a call failed the same way, the caller gets that kind's error
(the last one), with every attempt's error in ``.exceptions``; when they failed in
different ways, a ``RetryProviderError``, which is an ``ExceptionGroup``, so
``except*`` and ``.subgroup`` find each kind.

::

    AsyncProvError
    ├── ConfigurationError                      (also ValueError)
    │   ├── ProviderNotFoundError
    │   ├── ModelNotFoundError
    │   ├── MissingAuthError
    │   └── ClientClosedError
    ├── InvalidRequestError                     (also ValueError)
    │   ├── ImageError
    │   ├── ImagesNotSupportedError
    │   └── StreamNotSupportedError
    ├── ProviderNotWorkingError
    ├── APIError                                (provider, model)
    │   ├── APIConnectionError
    │   │   └── ProxyError                      (status: 407 when it refused the credentials)
    │   ├── APITimeoutError                     (also TimeoutError; .phase)
    │   │   ├── ConnectTimeoutError
    │   │   ├── FirstChunkTimeoutError
    │   │   ├── IdleTimeoutError
    │   │   ├── TotalTimeoutError
    │   │   └── QueueTimeoutError
    │   ├── HTTPStatusError                     (status, body, headers, retry_after)
    │   │   ├── BadRequestError                 400
    │   │   ├── AuthenticationError             401
    │   │   ├── PermissionDeniedError           403
    │   │   ├── NotFoundError                   404
    │   │   ├── ConflictError                   409
    │   │   ├── UnprocessableEntityError        422
    │   │   ├── RateLimitError                  429
    │   │   └── InternalServerError             5xx
    │   ├── ProviderError                       (error reported inside a 200 body)
    │   ├── ResponseDecodeError                 (status, body)
    │   │   ├── EventTooLargeError
    │   │   └── StructuredOutputError           (raw)
    │   └── StreamInterruptedError              (partial_text)
    │       └── StreamTimeoutError              (also TimeoutError; .phase)
    ├── RetryProviderError                      (also ExceptionGroup: .exceptions)
    ├── RetryNoProviderError
    └── SharedStateError                        (Redis unreachable, on_error="closed")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from ._headers import parse_retry_after

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "APIConnectionError", "APIError", "APITimeoutError", "AsyncProvError",
    "AuthenticationError", "BadRequestError", "ClientClosedError", "ConfigurationError",
    "ConflictError", "ConnectTimeoutError", "EventTooLargeError", "FirstChunkTimeoutError",
    "HTTPStatusError", "IdleTimeoutError", "ImageError", "ImagesNotSupportedError",
    "InternalServerError", "InvalidRequestError", "MissingAuthError", "ModelNotFoundError",
    "NotFoundError", "PermissionDeniedError", "ProviderError", "ProviderNotFoundError",
    "ProviderNotWorkingError", "ProxyError", "QueueTimeoutError", "RateLimitError",
    "ResponseDecodeError", "RetryNoProviderError", "RetryProviderError",
    "SharedStateError", "StreamInterruptedError", "StreamNotSupportedError", "StreamTimeoutError",
    "StructuredOutputError", "TimeoutPhase", "TotalTimeoutError", "UnprocessableEntityError",
    "error_for_status",
]  # fmt: skip

SNIPPET_LIMIT = 500
"""Characters of a response body kept on an error."""

TimeoutPhase = Literal["connect", "first_chunk", "idle", "total", "queue"]


def _snippet(body: bytes | str | None) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    return text if len(text) <= SNIPPET_LIMIT else text[:SNIPPET_LIMIT] + "…"


class AsyncProvError(Exception):
    """Root of every exception asyncprov raises."""

    code: ClassVar[str] = "error"
    """The error's kind in OpenAI's snake_case vocabulary (``rate_limit_error``, ...):
    one per kind, as batch results and the gateway report it; a class names its own
    with ``class X(Base, code="..."):`` and its subclasses inherit it."""

    def __init_subclass__(cls, *, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    retries_spent: bool = False
    """True when this error ended attempts already made (a call's retries, a group's
    failover, a rate limiter's 429 waits): no enclosing retry repeats them."""

    @classmethod
    def from_validation(cls, exc: ValidationError, *, what: str = "request") -> Self:
        """This error for a pydantic ``ValidationError``: a short, readable summary
        (``invalid request: messages.0.role: ...``) that never echoes the input."""
        errors = exc.errors(include_input=False, include_url=False)
        lines = []
        for error in errors[:3]:
            where = ".".join(str(part) for part in error["loc"] if part != "function-after")
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if where else message)
        more = len(errors) - len(lines)
        suffix = f" (and {more} more)" if more > 0 else ""
        return cls(f"invalid {what}: " + "; ".join(lines) + suffix)


class ConfigurationError(AsyncProvError, ValueError, code="configuration_error"):
    """Raised when the client or a provider is set up wrongly."""


class ProviderNotFoundError(ConfigurationError, code="not_found_error"):
    """Raised when a provider name is not known; the message names close matches."""


class ModelNotFoundError(ConfigurationError, code="not_found_error"):
    """Raised when no known provider serves a model name; names close matches."""


class MissingAuthError(ConfigurationError, code="authentication_error"):
    """Raised before any request when a provider that needs a key has none."""


class ClientClosedError(ConfigurationError):
    """Raised when a closed client is used."""


class InvalidRequestError(AsyncProvError, ValueError, code="invalid_request_error"):
    """Raised when the request itself is malformed (messages, options) before sending."""


class ImageError(InvalidRequestError):
    """Raised when an image cannot be used: unknown type, empty, missing, too large."""


class ImagesNotSupportedError(InvalidRequestError):
    """Raised when images are given to a provider that cannot take them."""


class StreamNotSupportedError(InvalidRequestError):
    """Raised when ``stream=True`` is asked of a provider that cannot stream."""


class ProviderNotWorkingError(AsyncProvError, code="provider_not_working_error"):
    """Raised when only providers marked not working could serve a request."""


class APIError(AsyncProvError, code="api_error"):
    """Raised when talking to a provider fails; base of every wire-level error."""

    partial_text: str = ""
    """Text already delivered to the caller when the error struck mid-stream."""
    exceptions: tuple[BaseException, ...] = ()
    """When this error ended a call after several attempts that all failed this way,
    every attempt's error, in order (this one last); else empty."""

    def __init__(
        self, message: str, *, provider: str | None = None, model: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"provider={self.provider}" if self.provider else "",
                f"model={self.model}" if self.model else "",
            )
            if part
        )
        return f"{self.message} ({where})" if where else self.message


class APIConnectionError(APIError, code="connection_error"):
    """Raised when the connection fails: refused, reset, DNS, TLS, or cut mid-body."""


class ProxyError(APIConnectionError, code="proxy_error"):
    """Raised when the proxy refuses or cannot be reached (``status`` 407: bad credentials)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.status = status


class APITimeoutError(APIError, TimeoutError, code="timeout_error"):
    """Raised when a timeout runs out; ``phase`` says which one."""

    phase: TimeoutPhase = "total"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.timeout = timeout


class ConnectTimeoutError(APITimeoutError):
    """Raised when connecting (or waiting for a pooled connection) takes too long."""

    phase: TimeoutPhase = "connect"


class FirstChunkTimeoutError(APITimeoutError):
    """Raised when headers and the first content chunk take longer than ``first_chunk``."""

    phase: TimeoutPhase = "first_chunk"


class IdleTimeoutError(APITimeoutError):
    """Raised when no content arrives for ``idle`` seconds (keepalives do not count)."""

    phase: TimeoutPhase = "idle"


class TotalTimeoutError(APITimeoutError):
    """Raised when the whole call, retries and failover included, exceeds ``total``."""

    phase: TimeoutPhase = "total"


class QueueTimeoutError(APITimeoutError):
    """Raised when a request waits past its rate limit's ``max_wait`` (nothing was sent)."""

    phase: TimeoutPhase = "queue"


class HTTPStatusError(APIError, code="api_error"):
    """Raised when a provider answers with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str | None = None,
        model: str | None = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.status = status
        self.body = _snippet(body)
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        """Response headers, names lower-cased."""
        self.error_type = error_type
        self.error_code = error_code
        self.retry_after = parse_retry_after(self.headers)

    def __str__(self) -> str:
        return f"HTTP {self.status}: {super().__str__()}"


class BadRequestError(HTTPStatusError, code="invalid_request_error"):
    """Raised on 400: the provider rejected the request as malformed."""


class AuthenticationError(HTTPStatusError, code="authentication_error"):
    """Raised on 401: the key is missing, wrong or revoked."""


class PermissionDeniedError(HTTPStatusError, code="permission_error"):
    """Raised on 403: the key may not use this model or endpoint."""


class NotFoundError(HTTPStatusError, code="not_found_error"):
    """Raised on 404: unknown model or endpoint."""


class ConflictError(HTTPStatusError, code="conflict_error"):
    """Raised on 409: a conflicting request; retryable."""


class UnprocessableEntityError(HTTPStatusError, code="invalid_request_error"):
    """Raised on 422: the request is well-formed but cannot be processed."""


class RateLimitError(HTTPStatusError, code="rate_limit_error"):
    """Raised on 429: rate limited; ``retry_after`` holds the server's wait, if any."""


class InternalServerError(HTTPStatusError, code="server_error"):
    """Raised on 5xx: the provider failed; retryable."""


_STATUS_ERRORS: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_for_status(status: int) -> type[HTTPStatusError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status, HTTPStatusError)


class ProviderError(APIError):
    """Raised when a provider reports an error inside a successful (200) response body."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.error_type = error_type
        self.error_code = error_code
        self.partial_text = partial_text


class ResponseDecodeError(APIError, code="invalid_response_error"):
    """Raised when a response is not in the expected format (not SSE, not JSON, wrong shape)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        body: bytes | str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.status = status
        self.body = _snippet(body)


class EventTooLargeError(ResponseDecodeError):
    """Raised when one server-sent event grows past the configured maximum size."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class StructuredOutputError(ResponseDecodeError):
    """Raised by ``parse()`` when a reply does not validate against the schema asked for."""

    def __init__(
        self, message: str, *, raw: str, provider: str | None = None, model: str | None = None
    ) -> None:
        super().__init__(message, provider=provider, model=model, body=raw)
        self.raw = raw
        """The reply's text, as it came."""


class StreamInterruptedError(APIError, code="stream_interrupted_error"):
    """Raised when a stream ends or breaks before its terminator; keeps the partial text."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.partial_text = partial_text


class StreamTimeoutError(StreamInterruptedError, APITimeoutError, code="timeout_error"):
    """Raised when a timeout ends a stream after content: an interruption and a timeout."""

    def __init__(
        self,
        message: str,
        *,
        phase: TimeoutPhase,
        timeout: float | None = None,
        provider: str | None = None,
        model: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message, provider=provider, model=model, partial_text=partial_text)
        self.phase = phase
        self.timeout = timeout


class RetryProviderError(AsyncProvError, ExceptionGroup[Exception], code="api_error"):
    """Raised when a call's attempts all failed, in different ways (an ExceptionGroup)."""

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> Self:
        return super().__new__(cls, message, list(exceptions))

    def __init__(self, message: str, exceptions: Sequence[Exception]) -> None:
        super().__init__(message, list(exceptions))

    def derive(self, excs: Sequence[Exception]) -> RetryProviderError:  # type: ignore[override]
        return RetryProviderError(self.message, excs)

    def __str__(self) -> str:
        return self.message


class RetryNoProviderError(AsyncProvError, code="no_provider_error"):
    """Raised when failover had no provider it could try at all."""


class SharedStateError(AsyncProvError, code="shared_state_error"):
    """Raised when Redis cannot be reached in time and ``on_error="closed"`` (nothing sent)."""
