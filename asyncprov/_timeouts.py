"""Timeout settings and the per-attempt deadline that enforces them.

One mechanism: each attempt has a ``Deadline``, owned by the code consuming that
attempt (the stream object, or the non-streaming read), which alone moves it; the HTTP
edge only reads ``Deadline.at()`` before each network wait and arms one timer for it.
Only content moves the idle clock forward: keepalive comments, empty events and
trickled bytes are not progress. A non-streaming body is one piece of content, so
``first_chunk`` bounds an attempt from sending to its complete body.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from ._clock import clock
from ._errors import (
    APITimeoutError,
    ConfigurationError,
    FirstChunkTimeoutError,
    IdleTimeoutError,
    TotalTimeoutError,
)

__all__ = ["Deadline", "Timeout", "TimeoutInput", "as_timeout"]


class Timeout(BaseModel):
    """How long each phase of a call may take, in seconds (``None``: no limit).

    Attributes:
        connect: opening a connection, proxy included (default 10 s).
        first_chunk: from sending the request to the first content chunk, headers
            included (default 120 s); for a non-streaming request, to the complete
            body.
        idle: the longest gap between two content chunks while the caller waits
            (default 60 s). Keepalive comments and trickled bytes do not reset it.
        total: the whole call, retries and failover included (default 600 s).

    ``connect``, ``first_chunk`` and ``idle`` bound each attempt separately, so a
    stalled attempt is retried or failed over; ``total`` bounds the whole call.

    Example:
        >>> Timeout(first_chunk=5, idle=10)
        Timeout(connect=10.0, first_chunk=5.0, idle=10.0, total=600.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    connect: float | None = Field(default=10.0, gt=0)
    first_chunk: float | None = Field(default=120.0, gt=0)
    idle: float | None = Field(default=60.0, gt=0)
    total: float | None = Field(default=600.0, gt=0)


TimeoutInput = Timeout | float | int | None
"""What ``timeout=`` takes: a ``Timeout``, a number (the total), or ``None`` (defaults)."""


def as_timeout(value: TimeoutInput, default: Timeout | None = None) -> Timeout:
    """Normalise a ``timeout=`` argument; a bare number is the total."""
    base = default or Timeout()
    if value is None:
        return base
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"timeout must be a positive number of seconds or a Timeout, not {value!r}"
        )
    return base.model_copy(update={"total": float(value)})


_AFTER_CONTENT = -math.inf
"""``Deadline.away_since`` after a content chunk: the caller's time away is not
counted, because idle restarts when it asks for the next."""


class Deadline:
    """When the current wait of one attempt must end, and why.

    Made when an attempt starts, sharing the call's ``total_at``. Its owner (the code
    consuming the attempt) calls ``delivered`` when a chunk goes to the caller and
    ``back`` when the caller asks for the next, so the caller's own time is never blamed
    on the server; ``hold``/``release`` do the same for chunks read ahead of a consumer.
    The HTTP edge reads ``at()``.

    After content the idle clock restarts when the caller asks for the next chunk
    (``back``): the same deadline as the delivery plus ``idle`` plus the time away, for
    one clock reading per chunk instead of two.
    """

    __slots__ = (
        "_total_at",
        "away_since",
        "has_content",
        "held_since",
        "idle",
        "listener",
        "parent",
        "progress_at",
        "timeout",
    )

    def __init__(
        self, timeout: Timeout, *, total_at: float | None = None, parent: Deadline | None = None
    ) -> None:
        now = clock()
        self.timeout = timeout
        self.idle = timeout.idle if timeout.idle is not None else math.inf
        if total_at is None:
            total_at = now + timeout.total if timeout.total is not None else math.inf
        self._total_at = total_at
        self.progress_at = (
            now + timeout.first_chunk if timeout.first_chunk is not None else math.inf
        )
        self.away_since: float | None = None
        """When a chunk went to the caller, who has not asked for the next yet
        (``_AFTER_CONTENT``: it was content, and idle restarts when the caller asks)."""
        self.held_since: float | None = None
        self.listener: Callable[[], None] | None = None
        """Told when the deadline moves earlier (the read timer re-arms)."""
        self.has_content = False
        self.parent = parent
        """The whole call's deadline, for one attempt's."""

    @property
    def total_at(self) -> float:
        """When the whole call must end (shared by every attempt of one call)."""
        return self._total_at

    def attempt(self) -> Deadline:
        """A fresh deadline for one attempt of this call, sharing its total."""
        return Deadline(self.timeout, total_at=self._total_at, parent=self)

    def shift(self, seconds: float, *, total: bool = True) -> None:
        """A wait that was not the call's own (queueing in a rate limiter) took
        ``seconds``: move this attempt's first_chunk clock (before content) and, with
        ``total``, its total and every enclosing call's by as much. (An attempt queued
        while a sibling of the same call was running leaves the totals alone: the call
        was not idle.)"""
        seconds = max(0.0, seconds)
        if not self.has_content:
            self.progress_at += seconds
        if not total:
            return
        total_at = self._total_at + seconds
        deadline: Deadline | None = self
        while deadline is not None:
            deadline._total_at = max(deadline._total_at, total_at)
            deadline = deadline.parent

    def at(self) -> float:
        """The clock value the current network wait must end by. While the caller is
        away between chunks (or held) only the total counts."""
        total_at = self._total_at
        if self.away_since is not None or self.held_since is not None:
            return total_at
        progress_at = self.progress_at
        return progress_at if progress_at < total_at else total_at

    def delivered(self, content: bool) -> None:
        """A chunk went to the caller; if it was ``content``, the idle clock restarts
        when the caller asks for the next (no clock reading here). The caller's own time
        from now until ``back`` is not idle time."""
        if content:
            self.has_content = True
            self.away_since = _AFTER_CONTENT
        else:
            self.away_since = clock()

    def back(self) -> None:
        """The caller asks for the next chunk: idle counts again, minus its time away."""
        away = self.away_since
        if away is not None:
            self.away_since = None
            if away == _AFTER_CONTENT:
                self.progress_at = clock() + self.idle
            else:
                self.progress_at += clock() - away

    def hold(self) -> None:
        """The consumer is busy with chunks read ahead for it: idle does not count."""
        if self.held_since is None:
            self.held_since = clock()

    def release(self) -> None:
        """The consumer wants more: idle counts again, minus the time it was held."""
        held = self.held_since
        if held is not None:
            self.held_since = None
            self.progress_at += clock() - held
            if self.listener is not None:
                self.listener()

    def expired(self, *, provider: str | None = None, model: str | None = None) -> APITimeoutError:
        """The timeout error for a wait that ran out, naming the phase."""
        timeout = self.timeout
        if clock() >= self._total_at - 1e-3:
            return TotalTimeoutError(
                f"the call took longer than its total timeout of {timeout.total} s",
                provider=provider,
                model=model,
                timeout=timeout.total,
            )
        if not self.has_content:
            return FirstChunkTimeoutError(
                f"no content within the first_chunk timeout of {timeout.first_chunk} s",
                provider=provider,
                model=model,
                timeout=timeout.first_chunk,
            )
        return IdleTimeoutError(
            f"no content for the idle timeout of {timeout.idle} s",
            provider=provider,
            model=model,
            timeout=timeout.idle,
        )
