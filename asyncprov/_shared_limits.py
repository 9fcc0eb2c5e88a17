"""Rate limits and provider health kept in Redis (``SharedState``), behind the same
methods as the in-memory ``Limiter`` and ``ProviderHealth``.

A request's turn is one operation of the script (``SharedStore.ask``, which sends the
reservations of one event-loop turn in one round trip): it takes a concurrency lease,
reserves the request's place in the rpm and tpm budgets (GCRA, see ``_shared_store``)
and answers how long to wait for that place; the request sleeps that long and is sent.
When a slot or the tokens are not there, the first request of this process in line
asks again (at least every ``POLL_MAX`` seconds) and the others queue behind it. Its
slot, its token count (once usage is reported) and its success or failure are
reported later, in the next round trip. When Redis cannot be used and
``on_error="open"``, the same call goes to the in-memory limiter behind it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._clock import clock
from ._health import ProviderHealth
from ._ratelimit import Limiter, RateLimit

if TYPE_CHECKING:
    from ._shared_store import SharedStore

__all__ = ["SharedHealth", "SharedLimiter"]

POLL_FIRST, POLL_MAX = 0.005, 0.1
"""Seconds between asking again for a concurrency slot held elsewhere (doubling)."""

_NO_HORIZON = 1e9  # seconds: "no longest wait" in the script's numbers


class SharedLimiter:
    """One provider's budgets in Redis for one client, with its in-memory ``Limiter``
    (``local``) for counting and for when Redis is away."""

    def __init__(self, store: SharedStore, local: Limiter) -> None:
        limit = local.limit
        self.name = local.name
        self.limit: RateLimit = limit
        self.counts_tokens = local.counts_tokens
        self.local = local
        self._store = store
        self._slots = limit.concurrency or 0
        rpm, tpm = limit.rpm or 0.0, limit.tpm or 0.0
        self._args: list[Any] = [
            store.state.lease,
            self._slots,
            60.0 / rpm if rpm else 0,
            max(1.0, rpm / 60.0),  # the same burst as in memory: one second's worth
            60.0 / tpm if tpm else 0,
            max(1.0, tpm / 60.0),
        ]
        self._horizon = limit.max_wait or _NO_HORIZON
        self._leases: list[str] = []  # held by this process here; any one serves a release
        self._local_held = 0  # slots taken from ``local`` while Redis was away
        self._line = anyio.Lock()  # this process's requests waiting for a slot, in order
        self._waiting = 0
        self._freed = anyio.Event()

    def estimate(self, body: Any) -> int:
        return self.local.estimate(body)

    def now(self) -> float:
        return self.local.now()

    def answered(self) -> None:
        self.local.answered()

    async def acquire(self, tokens: int) -> None:
        """Take a slot and a place in the budgets for one request of ``tokens``, and
        wait for that place."""
        if not self._waiting and (retry := await self._take(tokens)) is None:
            return
        self._waiting += 1  # later requests queue behind this one
        try:
            async with self._line:  # only the first in line asks Redis again
                delay, paced = POLL_FIRST, False
                while (retry := await self._take(tokens)) is not None:
                    self._freed = anyio.Event()
                    # Asked again at least every POLL_MAX: other processes' slots and
                    # tokens given back wake no one here.
                    started = anyio.current_time()
                    with anyio.move_on_after(min(retry, POLL_MAX) if retry else delay):
                        await self._freed.wait()  # freed here, or time to ask again
                    delay = min(delay * 2, POLL_MAX)
                    if retry:
                        self.local.paced += not paced  # one wait per request, however asked
                        self.local.paced_seconds += anyio.current_time() - started
                        paced = True
        finally:
            self._waiting -= 1

    async def _take(self, tokens: int) -> float | None:
        """One try: ``None`` once the request may be sent (after any wait for its
        reserved place); else the seconds to wait before asking again (0: every slot
        is taken, ask again soon)."""
        store, local = self._store, self.local
        lease = store.new_lease() if self._slots else ""
        op = ["acquire", self.name, lease, *self._args, tokens, self._horizon]
        # Shielded (the store bounds it): a place taken in Redis is always known here,
        # so a cancelled request gives its slot back instead of leaking it.
        with anyio.CancelScope(shield=True):
            answer = await store.ask(op)
        if answer is None:  # Redis is away (on_error="open"): this process alone
            await local.acquire(tokens)
            self._local_held += 1
            return None
        status, wait_ms = (int(n) for n in answer)
        if status == 1:
            return 0.0
        wait = wait_ms / 1000
        if status == 2:  # a 429 pause, the tpm budget, a place past max_wait
            return wait
        if lease:
            self._leases.append(lease)
            store.hold(lease, self.name)
        local.requests += 1
        local.in_flight += 1
        local.tokens += tokens
        if wait > 0:
            local.paced += 1
            local.paced_seconds += wait
        try:
            if wait > 0:
                await anyio.sleep(wait)  # Redis's time: real even under the testing switch
            else:
                await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            self.release()
            raise
        return None

    async def sleep(self, seconds: float) -> None:
        """Wait out a 429 (as ``Limiter.sleep``: not at all under the testing switch)."""
        await self.local.sleep(seconds)

    def release(self) -> None:
        """A request is done with its slot."""
        if self._local_held:
            self._local_held -= 1
            self.local.release()
            return
        self.local.in_flight -= 1
        if self._leases:
            self._store.drop(self._leases.pop(), self.name)
            self._freed.set()

    def settle(self, charged: int, used: int) -> None:
        """Correct a request's reservation by the tokens it really used."""
        if self._store.is_down:
            self.local.settle(charged, used)
            return
        self.local.tokens += used - charged
        if self._args[4] and used != charged:
            self._store.report(["settle", self.name, used - charged, self._args[4]])
            self._freed.set()  # tokens given back: the first in line asks again

    def on_429(
        self,
        retry_after: float | None,
        *,
        sent_at: float,
        waited: int,
        retry_after_max: float,
    ) -> float | None:
        """As ``Limiter.on_429``; a pause of the whole provider is shared."""
        wait = self.local.on_429(
            retry_after, sent_at=sent_at, waited=waited, retry_after_max=retry_after_max
        )
        if wait == 0.0 and (pause := self.local.pause_left()) > 0:
            self._store.report(["pause", self.name, pause])
        return wait


class SharedHealth(ProviderHealth):
    """``ProviderHealth`` whose failures and cool-downs are shared: each is reported to
    Redis (where consecutive failures are counted across processes), and the copy here
    is read again before a failover call once it is ``health_refresh`` seconds old."""

    is_shared = True

    def __init__(self, store: SharedStore) -> None:
        super().__init__()
        self._store = store
        self._read: dict[str, float] = {}  # provider -> when its shared state was read

    def record_success(self, name: str) -> None:
        super().record_success(name)
        self._store.report(["ok", name])

    def record_failure(self, name: str, error: BaseException) -> None:
        super().record_failure(name, error)
        retry_after = getattr(error, "retry_after", None) or 0
        self._store.report(["fail", name, retry_after, self.failures_to_cool, self.cooldown])

    async def refresh(self, names: Iterable[str]) -> None:
        """Read the shared cool-downs of ``names`` (those not read recently)."""
        now = clock()
        stale = [n for n in dict.fromkeys(names) if now - self._read.get(n, -1e9) >= self._every]
        if not stale:
            return
        answers = await self._store.run([["cooling", name] for name in stale])
        if answers is None:
            return  # Redis is away: this process's own view stands
        now = clock()
        for name, left_ms in zip(stale, answers, strict=True):
            self._read[name] = now
            if left_ms:
                self._until[name] = max(self._until.get(name, 0.0), now + left_ms / 1000)
            else:  # another process saw it answer, or its cool-down ended
                self._until.pop(name, None)

    @property
    def _every(self) -> float:
        return self._store.state.health_refresh
