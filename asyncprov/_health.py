"""Provider health, kept per client: which providers failed recently and cool down."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ._clock import clock
from ._errors import RateLimitError

__all__ = ["ProviderHealth"]

log = logging.getLogger("asyncprov")


class ProviderHealth:
    """Recent failures per provider, kept per client (never module-wide).

    A provider that fails ``failures_to_cool`` times in a row, or answers 429 with
    ``Retry-After``, cools down: failover skips it while others remain, and waits for
    it (within the call's total timeout) when none do.
    """

    is_shared = False
    """Whether the state is shared with other processes (``SharedHealth``): then
    failover calls ``await refresh(names)`` before picking a provider."""

    def __init__(self, *, failures_to_cool: int = 3, cooldown: float = 30.0) -> None:
        self.failures_to_cool = failures_to_cool
        self.cooldown = cooldown
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    async def refresh(self, names: Iterable[str]) -> None:
        """Bring the state of ``names`` up to date (nothing to do when it is this
        client's own)."""

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
        """An attempt on ``name`` produced content: it is healthy again."""
        self._failures.pop(name, None)
        if self._until.pop(name, None) is not None:
            log.info("%s: answered again, cool-down ended", name)

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
