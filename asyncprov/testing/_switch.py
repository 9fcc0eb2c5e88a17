"""The testing switch, as a block: ``with instant_retries(): ...``."""

from __future__ import annotations

from contextlib import AbstractContextManager

from .. import set_testing

__all__ = ["instant_retries"]


def instant_retries() -> AbstractContextManager[None]:
    """Turn every retry backoff, ``Retry-After``, cool-down and rate-limit wait off
    inside the block, so tests of retry behaviour never sleep (``set_testing(True)``).

    Example:
        >>> with instant_retries():
        ...     ...  # a 429 with Retry-After: 30 is retried at once
    """
    return set_testing(True)
