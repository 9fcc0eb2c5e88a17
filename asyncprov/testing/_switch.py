"""The testing switch for retries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._health import is_testing, set_testing

__all__ = ["instant_retries"]


@contextmanager
def instant_retries() -> Iterator[None]:
    """Turn every retry backoff, ``Retry-After`` and cool-down wait off inside the block,
    so tests of retry behaviour never sleep.

    Example:
        >>> with instant_retries():
        ...     ...  # a 429 with Retry-After: 30 is retried at once
    """
    previous = is_testing()
    set_testing(True)
    try:
        yield
    finally:
        set_testing(previous)
