"""The one clock, and the testing switch that turns every wait on it off.

The switch is the package's one piece of process-wide state, on purpose (as stamina's
is): tests flip it once around a block instead of mocking time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

__all__ = ["clock", "is_testing", "set_testing", "testing_attempts"]

clock = time.monotonic
"""The monotonic clock of deadlines, cool-downs, rate limits and retries (asyncio's
``loop.time()`` is the same clock, so timers set from it agree)."""


@dataclass
class _Testing:
    enabled: bool = False
    attempts: int | None = None


_TESTING = _Testing()


class _Restore:
    """Returned by ``set_testing``: leaving its ``with`` block restores what was before."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int | None]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _TESTING.enabled, _TESTING.attempts = self._previous


def set_testing(testing: bool, *, attempts: int | None = None) -> _Restore:
    """Turn every retry backoff, ``Retry-After``, cool-down and rate-limit wait off (or
    back on), at once; with ``attempts``, also make at most that many attempts per
    provider per call. Use the result in ``with`` to restore the previous state.

    Example:
        >>> with set_testing(True, attempts=1):
        ...     ...  # no waits, and every call makes one attempt per provider
    """
    if attempts is not None and (isinstance(attempts, bool) or attempts < 1):
        raise ValueError(f"attempts must be 1 or more, not {attempts!r}")
    previous = (_TESTING.enabled, _TESTING.attempts)
    _TESTING.enabled, _TESTING.attempts = testing, attempts
    return _Restore(previous)


def is_testing() -> bool:
    """Whether waits are turned off."""
    return _TESTING.enabled


def testing_attempts() -> int | None:
    """The cap on attempts per provider set with ``set_testing``, if any."""
    return _TESTING.attempts if _TESTING.enabled else None
