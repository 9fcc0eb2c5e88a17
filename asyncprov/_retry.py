"""Retry policy: which failures are worth another attempt, and how long to wait first.

Before the first content chunk reaches the caller only (the failover engine enforces
that). ``set_testing(True)`` turns every wait off so tests never sleep.
"""

from __future__ import annotations

import enum
import logging
import random
import time

from pydantic import BaseModel, ConfigDict, Field

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    AsyncProvError,
    ConfigurationError,
    HTTPStatusError,
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    ResponseDecodeError,
    StreamInterruptedError,
    TotalTimeoutError,
)

__all__ = [
    "Outcome",
    "ProviderHealth",
    "RetryPolicy",
    "classify",
    "clock",
    "is_testing",
    "set_testing",
]

log = logging.getLogger("asyncprov")

_testing = False


def set_testing(enabled: bool) -> None:
    """Turn every retry, backoff and cool-down wait off (for tests)."""
    global _testing
    _testing = enabled


def is_testing() -> bool:
    """Whether waits are turned off."""
    return _testing


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

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1)
    wait_initial: float = Field(default=0.5, ge=0)
    wait_max: float = Field(default=8.0, ge=0)
    wait_jitter: float = Field(default=1.0, ge=0)
    retry_after_max: float = Field(default=30.0, ge=0)

    def backoff(self, attempt: int) -> float:
        """The wait before attempt number ``attempt + 1`` (``attempt`` counts from 1)."""
        if _testing:
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
            return 0.0 if _testing else retry_after
        return self.backoff(attempt)


def clock() -> float:
    """The monotonic clock used for cool-downs and retry times."""
    return time.monotonic()


class ProviderHealth:
    """Recent failures per provider, kept per client (never module-wide).

    A provider that fails ``failures_to_cool`` times in a row, or answers 429 with
    ``Retry-After``, cools down: failover skips it while others remain, and waits for
    it (within the call's total timeout) when none do.
    """

    def __init__(self, *, failures_to_cool: int = 3, cooldown: float = 30.0) -> None:
        self.failures_to_cool = failures_to_cool
        self.cooldown = cooldown
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def cooling_until(self, name: str) -> float | None:
        """When ``name``'s cool-down ends, or ``None`` if it is not cooling."""
        until = self._until.get(name)
        if until is None:
            return None
        if clock() >= until:
            del self._until[name]
            log.info("%s: cool-down ended", name)
            return None
        return until

    def record_success(self, name: str) -> None:
        """An attempt on ``name`` produced content."""
        self._failures.pop(name, None)

    def record_failure(self, name: str, error: BaseException) -> None:
        """An attempt on ``name`` failed with ``error``."""
        count = self._failures[name] = self._failures.get(name, 0) + 1
        seconds: float | None = None
        if isinstance(error, RateLimitError) and error.retry_after:
            seconds = error.retry_after
        elif count >= self.failures_to_cool:
            seconds = self.cooldown
        if seconds:
            self._until[name] = max(self._until.get(name, 0.0), clock() + seconds)
            log.info("%s: cooling down for %.1f s after %d failure(s)", name, seconds, count)
