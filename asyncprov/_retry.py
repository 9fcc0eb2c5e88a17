"""Retry policy: which failures are worth another attempt, and how long to wait first.

Before the first content chunk reaches the caller only (the failover engine enforces
that). ``set_testing(True)`` turns every wait off so tests never sleep, and can cap the
attempts.
"""

from __future__ import annotations

import enum
import random

from pydantic import BaseModel, ConfigDict, Field

from ._clock import is_testing, testing_attempts
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncProvError,
    ConfigurationError,
    HTTPStatusError,
    InvalidRequestError,
    ProviderError,
    ProxyError,
    QueueTimeoutError,
    ResponseDecodeError,
    RetryProviderError,
    SharedStateError,
    StreamInterruptedError,
    TotalTimeoutError,
)
from ._options import RETRY_AFTER_MAX

__all__ = [
    "Outcome",
    "RetryPolicy",
    "classify",
    "final_error",
    "stop_error",
]


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
    if isinstance(error, TotalTimeoutError | InvalidRequestError | SharedStateError):
        return Outcome.STOP  # (shared limits unusable: no provider's fault, none would do)
    if getattr(error, "retries_spent", False):
        return Outcome.NEXT  # retried already (a group's attempts, a limiter's 429 waits)
    if isinstance(error, QueueTimeoutError):
        return Outcome.NEXT  # nothing was sent; this provider's queue is too long
    if isinstance(error, HTTPStatusError):
        if error.status in _STOP_STATUS:
            return Outcome.STOP
        if error.status in _RETRY_STATUS or error.status >= 500:
            return Outcome.RETRY
        return Outcome.NEXT  # 401, 403, 404 and the rest: another provider may do
    if isinstance(error, ProxyError) and error.status == 407:
        return Outcome.NEXT  # the proxy refused the credentials: as a 401, never retried
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
        max_retries: retries after the first attempt on one provider (default 2, as in
            openai-python: up to 3 attempts).
        wait_initial: the first backoff, in seconds (default 0.5).
        wait_max: the longest backoff (default 8 s).
        wait_jitter: how much of each backoff may be taken off at random, as a fraction
            (default 0.25), so many clients do not retry in step. Jitter only ever
            shortens a wait: the n-th wait is at most ``wait_initial * 2 ** (n - 1)``.
        retry_after_max: the longest ``Retry-After`` honoured (default 30 s), by
            retries and by a rate limiter's 429 pauses alike; a provider asking for
            more is failed over at once.

    Example:
        >>> RetryPolicy(max_retries=5, wait_initial=0.2).backoff(3) <= 0.8
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    max_retries: int = Field(default=2, ge=0)
    wait_initial: float = Field(default=0.5, ge=0)
    wait_max: float = Field(default=8.0, ge=0)
    wait_jitter: float = Field(default=0.25, ge=0, le=1)
    retry_after_max: float = Field(default=RETRY_AFTER_MAX, ge=0)

    @property
    def attempts(self) -> int:
        """Attempts on one provider: the first plus ``max_retries`` (at most the cap
        ``set_testing(True, attempts=N)`` sets)."""
        cap = testing_attempts()
        return self.max_retries + 1 if cap is None else min(cap, self.max_retries + 1)

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (counting from 1)."""
        if is_testing():
            return 0.0
        base: float = min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1))
        return base * (1.0 - random.random() * self.wait_jitter)

    def wait_before_retry(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``; ``None`` means do not retry
        this provider (its ``Retry-After`` is over ``retry_after_max``)."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.retry_after_max:
                return None
            return 0.0 if is_testing() else retry_after
        return self.backoff(attempt)


def _kind(error: BaseException) -> type[BaseException]:
    """What "failed the same way" compares: timeouts of any phase are one kind, and so
    are connection failures; everything else is its own class."""
    if isinstance(error, APITimeoutError):
        return APITimeoutError
    if isinstance(error, APIConnectionError) and not isinstance(error, ProxyError):
        return APIConnectionError
    return type(error)


def _describe(name: str, error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or "no message"
    return f"{name}: {type(error).__name__}: {message}"


def _listed(error: Exception, failures: list[tuple[str, Exception]], head: str) -> None:
    if isinstance(error, APIError):
        error.exceptions = tuple(e for _, e in failures)
    error.add_note(head + ":\n" + "\n".join(_describe(name, e) for name, e in failures))


def _spent(error: Exception) -> Exception:
    """Mark the error that ends a group's or a provider's attempts: an enclosing group
    may try another candidate, but never retries these attempts again."""
    if isinstance(error, AsyncProvError):
        error.retries_spent = True
    return error


def stop_error(error: Exception, failures: list[tuple[str, Exception]]) -> Exception:
    """``error`` (one that no further attempt could fix, e.g. the total timeout or a
    400), raised as itself with the attempts before it listed."""
    if len(failures) > 1:
        _listed(error, failures, f"after {len(failures)} attempts")
    return _spent(error)


def final_error(failures: list[tuple[str, Exception]]) -> Exception:
    """The error that ends a call whose every attempt failed (``(provider name,
    error)`` per attempt, in order): the last error itself when all failed the same way
    (every attempt's error kept in its ``exceptions``), else a ``RetryProviderError``
    grouping them."""
    errors = [error for _, error in failures]
    last = errors[-1]
    if len(errors) == 1:
        return _spent(last)
    names = {name for name, _ in failures}
    if len(names) == 1:
        head = f"{len(errors)} attempts on {next(iter(names))} failed"
    else:
        head = f"every provider failed ({len(errors)} attempts)"
    kind = _kind(last)
    if isinstance(last, APIError) and all(_kind(e) is kind for e in errors):
        _listed(last, failures, head)
        return _spent(last)
    lines = "\n".join(_describe(name, error) for name, error in failures)
    return _spent(RetryProviderError(head + ":\n" + lines, errors))
