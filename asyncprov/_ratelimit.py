"""Rate limits per provider, per client: requests and tokens per minute, a concurrency
cap, and 429 answers waited out instead of burning retries.

The HTTP edge asks a provider's limiter before every request it sends, so plain
calls, batches and failover attempts share one budget. Budgets are token buckets
refilled continuously, holding at most one second's worth (so bursts stay short). A 429
pauses every caller of that provider until its ``Retry-After`` (or a backoff) and the
request is sent again. Under the retry testing switch no wait sleeps: the limiter's
clock jumps ahead instead, and the waits are still counted. anyio is imported on first
use, keeping ``import asyncprov`` light.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ._clock import clock, is_testing

if TYPE_CHECKING:
    from ._shared_store import SharedStore

__all__ = ["AnyLimiter", "RateLimit", "RateLimitStats", "RateLimits"]

ANY_PROVIDER = "*"
"""The key of a limit applied to each provider without one of its own (separately)."""


class RateLimit(BaseModel):
    """Budgets for one provider on one client (``None``: no limit).

    Attributes:
        rpm: requests per minute.
        tpm: tokens per minute, prompt and completion. A request is charged an
            estimate when sent (a quarter of its body's size plus ``max_tokens``) and
            corrected by the real usage of a non-streamed answer.
        concurrency: the most requests in flight to the provider at once.
        max_429_waits: how many 429 answers one request waits out before the
            ``RateLimitError`` reaches the caller (default 5).
        max_wait: the longest one request waits for its turn (pacing, a 429 pause,
            the concurrency cap) before ``QueueTimeoutError`` (default 600 s; ``None``:
            no bound). Time waiting here does not count toward the call's timeouts.

    Example:
        >>> AsyncClient(OpenaiChat, rate_limits={"OpenaiChat": RateLimit(rpm=500, tpm=200_000)})
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, ge=1)
    max_429_waits: int = Field(default=5, ge=0)
    max_wait: float | None = Field(default=600.0, gt=0)


class RateLimitStats(BaseModel):
    """What one provider's limiter has done so far on this client.

    Attributes:
        requests: requests let through (each resend after a 429 counts).
        paced: waits for the rpm or tpm budget before a request.
        paced_seconds: the time those waits took (or would have, under the testing
            switch).
        rate_limited: 429 answers waited out.
        paused_seconds: the waits 429s asked for (a request's own, or the provider's
            pause for every caller).
        in_flight: requests holding a slot now.
        waiting: requests waiting for their turn now (the queue's depth).
        tokens: tokens charged (estimates, corrected by the usage reported).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    requests: int = 0
    paced: int = 0
    paced_seconds: float = 0.0
    rate_limited: int = 0
    paused_seconds: float = 0.0
    in_flight: int = 0
    waiting: int = 0
    tokens: int = 0


class Limiter:
    """One provider's budgets and counters (made in the running loop, on first use)."""

    def __init__(self, name: str, limit: RateLimit) -> None:
        import anyio

        self.name = name
        self.limit = limit
        self.counts_tokens = limit.tpm is not None
        self._lock = anyio.Lock()
        self._slots = anyio.Semaphore(limit.concurrency) if limit.concurrency else None
        self._rpm_rate = (limit.rpm or 0.0) / 60.0
        self._tpm_rate = (limit.tpm or 0.0) / 60.0
        self._rpm_burst = max(1.0, self._rpm_rate)
        self._tpm_burst = max(1.0, self._tpm_rate)
        self._rpm_level = self._rpm_burst
        self._tpm_level = self._tpm_burst
        self._skew = 0.0  # how far the testing switch has moved this limiter's clock
        self._updated = self._now()
        self._paused_until = 0.0
        self._pause_began = -math.inf
        self._last_ok = True  # whether the provider's last answer was not a 429
        self.requests = self.paced = self.rate_limited = self.in_flight = self.tokens = 0
        self.waiting = 0
        self.paced_seconds = self.paused_seconds = 0.0

    def _now(self) -> float:
        return clock() + self._skew

    def now(self) -> float:
        """This limiter's clock (moved ahead by waits under the testing switch)."""
        return clock() + self._skew

    def stats(self) -> RateLimitStats:
        return RateLimitStats(
            requests=self.requests,
            paced=self.paced,
            paced_seconds=round(self.paced_seconds, 6),
            rate_limited=self.rate_limited,
            paused_seconds=round(self.paused_seconds, 6),
            in_flight=self.in_flight,
            waiting=self.waiting,
            tokens=self.tokens,
        )

    def estimate(self, body: Any) -> int:
        """The tokens a request body is charged before its usage is known."""
        import pydantic_core

        try:
            size = len(pydantic_core.to_json(body))
        except pydantic_core.PydanticSerializationError:
            size = 0
        completion = 0
        if isinstance(body, Mapping):
            completion = body.get("max_tokens") or body.get("max_completion_tokens") or 0
        return size // 4 + (completion if isinstance(completion, int) else 0)

    async def acquire(self, tokens: int) -> None:
        """Wait for a slot and the budget for one request of ``tokens``, and take them."""
        if not self.waiting and self._take_now(tokens):
            return  # the usual case: both free and no one queued ahead, so no yield
        self.waiting += 1
        try:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                async with self._lock:  # callers queue in order behind the one waiting
                    await self._wait_for_budget(tokens)
            except BaseException:
                if self._slots is not None:
                    self._slots.release()
                raise
        finally:
            self.waiting -= 1
        self.in_flight += 1
        self.requests += 1

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this limiter's clock (under the testing switch the clock
        jumps instead)."""
        import anyio

        if is_testing():
            self._skew += seconds
            await anyio.lowlevel.checkpoint()  # still a wait: the other tasks go first
        else:
            await anyio.sleep(seconds)

    async def _wait_for_budget(self, tokens: int) -> None:
        import anyio

        while True:
            now = self._now()
            self._refill(now)
            wait = self._paused_until - now
            paused = wait > 0
            if not paused:
                wait = max(self._rpm_wait(), self._tpm_wait(tokens))
                if wait <= 0:
                    break
                self.paced += 1
                self.paced_seconds += wait
            if is_testing():
                self._skew += wait
            else:
                await anyio.sleep(wait)
        self._take(tokens)

    def _take_now(self, tokens: int) -> bool:
        """Take a slot and the budget at once (no checkpoint: a lock or semaphore would
        cost a trip through the event loop) when both are free; else ``False``."""
        slots = self._slots
        if slots is not None and slots.value == 0:
            return False
        now = self._now()
        self._refill(now)
        if self._paused_until > now or self._rpm_wait() > 0 or self._tpm_wait(tokens) > 0:
            return False
        if slots is not None:
            slots.acquire_nowait()
        self._take(tokens)
        self.in_flight += 1
        self.requests += 1
        return True

    def _take(self, tokens: int) -> None:
        if self._rpm_rate:
            self._rpm_level -= 1.0
        if self._tpm_rate:
            self._tpm_level -= tokens
        self.tokens += tokens

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        if self._rpm_rate:
            self._rpm_level = min(self._rpm_burst, self._rpm_level + elapsed * self._rpm_rate)
        if self._tpm_rate:
            self._tpm_level = min(self._tpm_burst, self._tpm_level + elapsed * self._tpm_rate)

    def _rpm_wait(self) -> float:
        if not self._rpm_rate or self._rpm_level >= 1.0:
            return 0.0
        return (1.0 - self._rpm_level) / self._rpm_rate

    def _tpm_wait(self, tokens: int) -> float:
        # A request larger than the bucket goes once the bucket is full, leaving a debt.
        need = min(float(tokens), self._tpm_burst)
        if not self._tpm_rate or self._tpm_level >= need:
            return 0.0
        return (need - self._tpm_level) / self._tpm_rate

    def pause_left(self) -> float:
        """Seconds left of a 429 pause of every caller (0 when none)."""
        return max(0.0, self._paused_until - self._now())

    def release(self) -> None:
        """A request's response is done with: free its slot."""
        self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def settle(self, charged: int, used: int) -> None:
        """Correct a request's estimate by the tokens it really used."""
        self.tokens += used - charged
        if self._tpm_rate:
            self._tpm_level = min(self._tpm_burst, self._tpm_level + charged - used)

    def answered(self) -> None:
        """The provider answered with something other than 429."""
        self._last_ok = True

    def on_429(
        self,
        retry_after: float | None,
        *,
        sent_at: float,
        waited: int,
        retry_after_max: float,
    ) -> float | None:
        """A 429 arrived for a request sent at ``sent_at`` (``now()``) that has waited
        out ``waited`` 429s already. Returns how long this request waits on its own
        before it is sent again: 0 when a pause of the whole provider holds it back,
        ``None`` when it is not sent again (the provider asks for longer than the retry
        policy's ``retry_after_max``).

        The wait is what the server asked (``retry-after-ms`` or ``Retry-After``), and no
        longer; without either, 0.5, 1, 2... s for this request. A 429 right after an
        answer that was not one is this request's own, and only it waits; a 429 after
        another 429 pauses every caller, for the longest wait any request of the burst
        (those sent before the pause began) was asked."""
        if retry_after is not None and retry_after > retry_after_max:
            return None
        self.rate_limited += 1
        if retry_after is None:
            retry_after = min(retry_after_max, 0.5 * 2.0**waited)
        isolated, self._last_ok = self._last_ok, False
        if isolated:  # the answer before this one was no 429: this request waits alone
            self.paused_seconds += retry_after
            return retry_after
        if sent_at >= self._pause_began:  # a new pause; else one of the burst that began it
            self._pause_began = self._now()
        until = self._pause_began + retry_after  # a burst pauses for its longest wait
        if until > self._paused_until:
            self.paused_seconds += until - max(self._paused_until, self._pause_began)
            self._paused_until = until
        return 0.0  # the pause holds this request back with everyone else's


class AnyLimiter(Protocol):
    """What the HTTP edge asks of a provider's limiter: ``Limiter`` (in memory) or
    ``SharedLimiter`` (in Redis)."""

    name: str
    limit: RateLimit
    counts_tokens: bool

    def estimate(self, body: Any) -> int: ...
    def now(self) -> float: ...
    async def acquire(self, tokens: int) -> None: ...
    async def sleep(self, seconds: float) -> None: ...
    def release(self) -> None: ...
    def settle(self, charged: int, used: int) -> None: ...
    def answered(self) -> None: ...
    def on_429(
        self,
        retry_after: float | None,
        *,
        sent_at: float,
        waited: int,
        retry_after_max: float,
    ) -> float | None: ...


class RateLimits(MutableMapping[str, RateLimit]):
    """A client's rate limits, by provider name (``"*"``: each provider without its
    own, separately). Change them at any time; a changed limit starts afresh.

    Example:
        >>> client.rate_limits["OpenaiChat"] = RateLimit(rpm=500, concurrency=32)
        >>> client.rate_limits.stats("OpenaiChat").paced
        0
    """

    def __init__(self, limits: Mapping[str, RateLimit] | None = None) -> None:
        self._limits: dict[str, RateLimit] = {}
        self._limiters: dict[str, Limiter] = {}
        for name, limit in (limits or {}).items():
            self[name] = limit

    def __getitem__(self, name: str) -> RateLimit:
        return self._limits[name]

    def __setitem__(self, name: str, limit: RateLimit) -> None:
        if not isinstance(limit, RateLimit):
            from ._errors import ConfigurationError

            raise ConfigurationError(f"the limit for {name!r} must be a RateLimit")
        self._limits[name] = limit
        self._forget(name)

    def __delitem__(self, name: str) -> None:
        del self._limits[name]
        self._forget(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._limits)

    def __len__(self) -> int:
        return len(self._limits)

    def __repr__(self) -> str:
        return f"RateLimits({self._limits!r})"

    def _forget(self, name: str) -> None:
        if name == ANY_PROVIDER:
            self._limiters = {n: v for n, v in self._limiters.items() if n in self._limits}
        else:
            self._limiters.pop(name, None)

    def stats(self, name: str) -> RateLimitStats:
        """What ``name``'s limiter has done so far (zeros before its first request)."""
        limiter = self._limiters.get(name)
        return limiter.stats() if limiter is not None else RateLimitStats()

    def limiter(self, name: str | None, shared: SharedStore | None = None) -> AnyLimiter | None:
        """The limiter for provider ``name``, made on first use (in the running loop);
        with ``shared``, its twin keeping the budgets in Redis."""
        if name is None:
            return None
        limiter = self._limiters.get(name)
        if limiter is None:
            limit = self._limits.get(name) or self._limits.get(ANY_PROVIDER)
            if limit is None:
                return None
            limiter = self._limiters[name] = Limiter(name, limit)
        return limiter if shared is None else shared.limiter(limiter)
