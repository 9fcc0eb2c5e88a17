"""Retry policy: which failures are worth another attempt, and how long to wait first.

Before the first content chunk reaches the caller only (the failover engine enforces
that). ``set_testing(True)`` turns every wait off so tests never sleep.
"""

from __future__ import annotations

import enum
import random

from pydantic import BaseModel, ConfigDict, Field

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    AsyncProvError,
    ConfigurationError,
    HTTPStatusError,
    InvalidRequestError,
    ProviderError,
    ResponseDecodeError,
    StreamInterruptedError,
    TotalTimeoutError,
)
from ._health import is_testing, set_testing

__all__ = ["Outcome", "RetryPolicy", "classify", "is_testing", "set_testing"]


class Outcome(enum.Enum):
    """What a failed attempt means for the next one."""

    RETRY = "retry"
    """Transient: the same provider may be tried again (after a wait)."""
    NEXT = "next"
    """This provider will not do (auth, unknown model, bad answer): try another."""
    STOP = "stop"
    """The request itself is wrong, or time is up: no attempt can succeed."""


_RETRY_STATUS = frozenset({408, 409, 429})
_STOP_STATUS = frozenset({400, 422})
_RETRY_ERROR_TYPES = frozenset(
    {"server_error", "overloaded_error", "rate_limit_error", "api_error", "timeout"}
)


def classify(error: BaseException) -> Outcome:
    """What ``error`` (raised before any content reached the caller) calls for."""
    if isinstance(error, TotalTimeoutError | InvalidRequestError):
        return Outcome.STOP
    if isinstance(error, HTTPStatusError):
        if error.status in _STOP_STATUS:
            return Outcome.STOP
        if error.status in _RETRY_STATUS or error.status >= 500:
            return Outcome.RETRY
        return Outcome.NEXT  # 401, 403, 404 and the rest: another provider may do
    if isinstance(error, APIConnectionError | APITimeoutError | StreamInterruptedError):
        return Outcome.RETRY
    if isinstance(error, ProviderError):
        code = error.error_code or ""
        if error.error_type in _RETRY_ERROR_TYPES or code == "429" or code.startswith("5"):
            return Outcome.RETRY
        return Outcome.NEXT
    if isinstance(error, ResponseDecodeError | ConfigurationError | AsyncProvError):
        return Outcome.NEXT  # a complete but undecodable answer, a missing key...
    return Outcome.STOP


class RetryPolicy(BaseModel):
    """How attempts on one provider are spaced.

    Attributes:
        attempts: attempts on one provider when it is retried (``max_retries``).
        wait_initial: the first backoff, in seconds (default 0.5).
        wait_max: the longest backoff (default 8 s).
        wait_jitter: random extra wait, as a fraction of the backoff (default 1.0:
            up to double), so many clients do not retry in step.
        retry_after_max: the longest ``Retry-After`` honoured (default 30 s); a
            provider asking for more is failed over at once.

    Example:
        >>> RetryPolicy(attempts=5, wait_initial=0.2).backoff(3) <= 0.8 * 2
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    attempts: int = Field(default=3, ge=1)
    wait_initial: float = Field(default=0.5, ge=0)
    wait_max: float = Field(default=8.0, ge=0)
    wait_jitter: float = Field(default=1.0, ge=0)
    retry_after_max: float = Field(default=30.0, ge=0)

    def backoff(self, attempt: int) -> float:
        """The wait before attempt number ``attempt + 1`` (``attempt`` counts from 1)."""
        if is_testing():
            return 0.0
        base: float = min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1))
        return base * (1 + random.random() * self.wait_jitter)

    def wait_before_retry(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``; ``None`` means do not retry
        this provider (its ``Retry-After`` is over ``retry_after_max``)."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.retry_after_max:
                return None
            return 0.0 if is_testing() else retry_after
        return self.backoff(attempt)
