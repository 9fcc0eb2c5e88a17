"""What a batch run reports: one ``BatchResult`` per request, and ``BatchProgress``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ._clock import clock
from ._types import Attempt, ChatCompletion, Usage, trusted

__all__ = ["BatchProgress", "BatchResult", "failure", "result"]


class BatchResult(BaseModel):
    """The outcome of one batch request: its completion, or the error that ended it.

    Attributes:
        custom_id: the request's ``custom_id`` (``None`` when it had none).
        index: the request's position in the input, from 0.
        completion: the completion, when the request succeeded.
        error: the exception, when it failed (never serialized).
        error_type: the exception's class name, e.g. ``"RateLimitError"``.
        error_message: the exception's message.
        status: the HTTP status of the failure, when there was one.
        provider: the provider that answered (or that failed last).
        attempts: every try the call made (empty for a failure with no provider).
        latency: seconds from the request's start to its result.
        usage: the completion's token counts.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    custom_id: str | None = None
    index: int
    completion: ChatCompletion | None = None
    error: Exception | None = Field(default=None, exclude=True, repr=False)
    error_type: str | None = None
    error_message: str | None = None
    status: int | None = None
    provider: str | None = None
    attempts: tuple[Attempt, ...] = ()
    latency: float = 0.0
    usage: Usage | None = None

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.completion is not None


class BatchProgress(BaseModel):
    """A snapshot of a batch run, as given to the ``progress`` callback.

    Attributes:
        done: requests that succeeded.
        failed: requests that ended with an error.
        in_flight: requests started and not finished.
        prompt_tokens, completion_tokens, total_tokens: summed over the successes.
        elapsed: seconds since the run started.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    done: int = 0
    failed: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    elapsed: float = 0.0

    @property
    def finished(self) -> int:
        """Requests with a result, successful or not."""
        return self.done + self.failed


def failure(index: int, custom_id: str | None, error: Exception, started: float) -> BatchResult:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    provider = getattr(error, "provider", None)
    provider = provider if isinstance(provider, str) else None
    attempts: tuple[Attempt, ...] = ()
    if provider is not None:
        attempts = (Attempt(provider=provider, ok=False, error_type=type(error).__name__),)
    status = getattr(error, "status", None)
    return result(
        custom_id,
        index,
        None,
        error=error,
        error_type=type(error).__name__,
        error_message=message,
        status=status if isinstance(status, int) else None,
        provider=provider,
        attempts=attempts,
        latency=round(clock() - started, 6),
    )


def result(
    custom_id: str | None,
    index: int,
    completion: ChatCompletion | None,
    *,
    error: Exception | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    status: int | None = None,
    provider: str | None = None,
    attempts: tuple[Attempt, ...] = (),
    latency: float = 0.0,
    usage: Usage | None = None,
) -> BatchResult:
    return trusted(
        BatchResult,
        {
            "custom_id": custom_id,
            "index": index,
            "completion": completion,
            "error": error,
            "error_type": error_type,
            "error_message": error_message,
            "status": status,
            "provider": provider,
            "attempts": attempts,
            "latency": latency,
            "usage": usage,
        },
    )
