"""The Redis side of ``SharedState``: one Lua script, every Redis round trip bounded,
and the one decision of what a call does when Redis fails.

Every budget decision is one call of ``SCRIPT`` (atomic in Redis), reading the clock
with ``TIME`` inside it: no machine's own clock is ever compared with another's, only
durations come back. The script takes a list of operations, so one round trip carries a
request's reservation together with what earlier requests of this process left to
report (slots released, token counts settled, failures and successes). What is left to
report goes in the next reservation, or is flushed by the client's one background task
(``_pump``), which also renews the leases of the slots this process holds.

Rates use GCRA (the generic cell rate algorithm), not a sliding window: one timestamp
per budget (the "theoretical arrival time"), so each decision is O(1) in time and
memory whatever the rate; costs may differ per request (tokens) and be refunded
(reported usage moves the timestamp back); and a place can be reserved ahead: a request
learns its exact wait in the same step that takes its place, so waiting for the rpm
budget costs no further round trip. (A tpm place is only taken when it fits now: its
cost is an estimate until the usage is reported, and a refund cannot move a place
already handed out.) It is the same budget as the in-memory token bucket (a bucket
holding one second's worth).
A sliding-window log needs a set member per request, and a windowed counter lets up to
twice the limit through around a window edge.

Concurrency slots are a sorted set of leases scored by their expiry: a slot whose
process died is dropped once its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._clock import clock
from ._errors import ConfigurationError, SharedStateError
from ._shared import SharedState

if TYPE_CHECKING:
    from ._ratelimit import Limiter
    from ._shared_limits import SharedLimiter

__all__ = ["NO_SLOT", "PAUSED", "SharedStore"]

log = logging.getLogger("asyncprov")

GRANTED, NO_SLOT, PAUSED = 0, 1, 2
"""What an ``acquire`` operation answers (with a wait in milliseconds)."""

SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ns = ARGV[1]
local ops = cjson.decode(ARGV[2])
local out = {}

local function ms(seconds) return math.ceil(seconds * 1000) end
local function store(key, value, ttl)
  redis.call('SET', key, string.format('%.6f', value), 'PX', math.max(1, ms(ttl)))
end
-- GCRA: the wait before `cost` fits a bucket of `burst` (in units of `interval` s).
local function gcra(key, interval, burst, cost)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local wait = tat + math.min(cost, burst) * interval - burst * interval - now
  return math.max(0, wait), tat + cost * interval
end

for i, op in ipairs(ops) do
  local kind, base = op[1], ns .. ':' .. op[2] .. ':'
  local result = 0
  if kind == 'acquire' then
    -- lease, lease_s, concurrency, rpm_interval, rpm_burst, tpm_interval, tpm_burst,
    -- tokens, horizon_s
    local lease, lease_s, slots = op[3], op[4], op[5]
    local paused = tonumber(redis.call('GET', base .. 'pause') or '0') - now
    if paused > 0 then
      result = {2, ms(paused)}
    else
      local taken = 0
      if slots > 0 then
        redis.call('ZREMRANGEBYSCORE', base .. 'slots', '-inf', now)
        taken = redis.call('ZCARD', base .. 'slots')
      end
      if slots > 0 and taken >= slots then
        result = {1, 0}
      else
        local wait, tpm_wait, rpm_tat, tpm_tat = 0, 0, nil, nil
        if op[6] > 0 then wait, rpm_tat = gcra(base .. 'rpm', op[6], op[7], 1) end
        if op[8] > 0 and op[10] > 0 then
          tpm_wait, tpm_tat = gcra(base .. 'tpm', op[8], op[9], op[10])
        end
        if tpm_wait > 0 then
          -- Tokens are an estimate until the usage is reported: no place is reserved
          -- ahead for them (settling could not move it), the caller asks again.
          result = {2, ms(tpm_wait)}
        elseif wait > op[11] then
          result = {2, ms(wait)}  -- past the caller's longest wait: nothing reserved
        else
          if rpm_tat then store(base .. 'rpm', rpm_tat, rpm_tat - now + 1) end
          if tpm_tat then store(base .. 'tpm', tpm_tat, tpm_tat - now + 1) end
          if slots > 0 then
            redis.call('ZADD', base .. 'slots', now + lease_s, lease)
            redis.call('PEXPIRE', base .. 'slots', ms(lease_s * 2))
          end
          result = {0, ms(wait)}
        end
      end
    end
  elseif kind == 'release' then
    redis.call('ZREM', base .. 'slots', op[3])
  elseif kind == 'renew' then
    for j = 4, #op do redis.call('ZADD', base .. 'slots', 'XX', now + op[3], op[j]) end
    redis.call('PEXPIRE', base .. 'slots', ms(op[3] * 2))
  elseif kind == 'settle' then
    -- tokens used minus tokens reserved, tpm interval: moves the budget's time
    local tat = tonumber(redis.call('GET', base .. 'tpm') or '0')
    if tat > now then
      tat = tat + op[3] * op[4]
      if tat > now then store(base .. 'tpm', tat, tat - now + 1)
      else redis.call('DEL', base .. 'tpm') end
    elseif op[3] > 0 then
      store(base .. 'tpm', now + op[3] * op[4], op[3] * op[4] + 1)
    end
  elseif kind == 'pause' then
    local until_ = now + op[3]
    if until_ > tonumber(redis.call('GET', base .. 'pause') or '0') then
      store(base .. 'pause', until_, op[3] + 1)
    end
  elseif kind == 'fail' then
    -- retry_after_s (0: none), failures_to_cool, cooldown_s
    local key = base .. 'health'
    local count = redis.call('HINCRBY', key, 'failures', 1)
    local seconds = 0
    if op[3] > 0 then seconds = op[3] elseif count >= op[4] then seconds = op[5] end
    if seconds > 0 then
      local until_ = now + seconds
      if until_ > tonumber(redis.call('HGET', key, 'until') or '0') then
        redis.call('HSET', key, 'until', string.format('%.6f', until_))
      end
    end
    redis.call('EXPIRE', key, 3600)
  elseif kind == 'ok' then
    redis.call('DEL', base .. 'health')
  elseif kind == 'cooling' then
    local left = tonumber(redis.call('HGET', base .. 'health', 'until') or '0') - now
    if left > 0 then result = ms(left) end
  end
  out[i] = result
end
return out
"""


class SharedStore:
    """One client's connection to the shared state, made in its event loop on first
    use. Owns the Redis connection pool, whether Redis is usable now (and what a call
    does when not), the operations waiting to be reported, and the leases held.
    """

    def __init__(self, state: SharedState) -> None:
        import importlib.util

        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "shared_state needs the redis package: pip install 'asyncprov[redis]'"
            )
        self.state = state
        self.token = uuid.uuid4().hex[:16]
        """This store's part of every lease name (unique per process and client)."""
        self._counter = itertools.count()
        self._redis: Any = None
        self._script: Any = None
        self._outbox: list[list[Any]] = []
        self._leases: dict[str, str] = {}  # lease -> provider name
        self._limiters: dict[str, SharedLimiter] = {}
        self._pump: asyncio.Task[None] | None = None
        self._asks: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._gathering = False  # a round trip is gathering asks (sent on the next turn)
        self._senders: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._down = False
        self._retry_at = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"SharedStore({self.state!r})"

    @property
    def is_down(self) -> bool:
        """Whether Redis failed last time and is not being tried yet."""
        return self._down

    def limiter(self, local: Limiter) -> SharedLimiter:
        """The shared twin of ``local`` (made on first use, and again when the limit
        behind ``local`` changed)."""
        shared = self._limiters.get(local.name)
        if shared is None or shared.local is not local:
            from ._shared_limits import SharedLimiter

            shared = self._limiters[local.name] = SharedLimiter(self, local)
        return shared

    def new_lease(self) -> str:
        return f"{self.token}:{next(self._counter)}"

    def hold(self, lease: str, provider: str) -> None:
        """A slot is held: renew its lease until ``drop`` is called."""
        first = not self._leases
        self._leases[lease] = provider
        self._start_pump()
        if first and self._wake is not None:
            self._wake.set()  # the pump sets its renewal timer

    def drop(self, lease: str, provider: str) -> None:
        """A slot is given back: report it (with the next round trip)."""
        if self._leases.pop(lease, None) is not None:
            self.report(["release", provider, lease])

    def report(self, op: list[Any]) -> None:
        """Send ``op`` with the next round trip (a reservation's, or the pump's, soon)."""
        if self._down and clock() < self._retry_at:
            return  # Redis is known to be away: what it would be told no longer matters
        self._outbox.append(op)
        self._start_pump()
        if self._wake is not None:
            self._wake.set()

    async def ask(self, op: list[Any]) -> Any:
        """``op``'s answer, from one round trip shared with every other ``ask`` of the
        same turn of the event loop (at concurrency 64 a reservation costs a fraction
        of a round trip). ``None`` when Redis cannot be used (``on_error="open"``).

        Raises:
            SharedStateError: Redis cannot be used and ``on_error="closed"``.
        """
        if self._down and clock() < self._retry_at:
            self._unavailable(None)
            return None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._asks.append((op, answer))
        if not self._gathering:
            self._gathering = True
            sender = loop.create_task(self._send_asks())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await answer

    async def _send_asks(self) -> None:
        await asyncio.sleep(0)  # the other asks of this turn join the round trip
        asks, self._asks, self._gathering = self._asks, [], False
        try:
            answers = await self.run([op for op, _ in asks])
        except BaseException as error:
            for _, answer in asks:
                if not answer.done():  # each caller its own exception object
                    answer.set_exception(
                        SharedStateError(str(error))
                        if isinstance(error, SharedStateError)
                        else error
                    )
            if not isinstance(error, Exception):
                raise
            return
        for index, (_, answer) in enumerate(asks):
            if not answer.done():
                answer.set_result(None if answers is None else answers[index])

    async def run(self, ops: Sequence[list[Any]]) -> list[Any] | None:
        """One round trip: what is waiting to be reported, then ``ops``; their answers.
        ``None`` when Redis cannot be used (``on_error="open"``).

        Raises:
            SharedStateError: Redis cannot be used and ``on_error="closed"``.
        """
        if self._down and clock() < self._retry_at:
            self._outbox.clear()  # what it would be told no longer matters
            self._unavailable(None)
            return None
        pending, self._outbox = self._outbox, []
        batch = [*pending, *ops]
        if not batch:
            return []
        try:
            # Importing redis-py and making the client is no Redis operation: it stays
            # out of the bound (a cold import alone can outlast the timeout on a busy host).
            script = self._script or self._connect()
            async with asyncio.timeout(self.state.timeout):
                answers = await script(args=[self.state.namespace, json.dumps(batch)])
        except Exception as error:  # redis errors, OSError, TimeoutError: Redis unusable
            if isinstance(error, SharedStateError | ConfigurationError):
                raise
            self._unavailable(error)
            return None
        if self._down:
            self._down = False
            log.warning("shared state %s reachable again: limits and health shared", self.where)
        return list(answers[len(pending) :])

    @property
    def where(self) -> str:
        return self.state.where

    def _unavailable(self, error: BaseException | None) -> None:
        """Redis cannot be used: note it (``error``: it just failed), and raise when
        ``on_error="closed"``."""
        if error is not None:
            self._retry_at = clock() + self.state.retry_interval
            if not self._down:
                self._down = True
                what = (
                    "failing calls with SharedStateError"
                    if self.state.on_error == "closed"
                    else "each process keeps its own limits and health until it is back"
                )
                log.warning(
                    "shared state %s unreachable (%s): %s", self.where, _describe(error), what
                )
            self._outbox.clear()
        if self.state.on_error == "closed":
            reason = _describe(error) if error is not None else "it failed just before"
            raise SharedStateError(f"the shared state {self.where} cannot be used: {reason}")

    def _connect(self) -> Any:
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        timeout = self.state.timeout
        self._redis = aioredis.Redis.from_url(
            self.state.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the one retry policy is ours: none within a call
            health_check_interval=0,
        )
        self._script = self._redis.register_script(SCRIPT)
        return self._script

    def _start_pump(self) -> None:
        if self._pump is None and not self._closed:
            self._wake = asyncio.Event()
            self._pump = asyncio.get_running_loop().create_task(self._run_pump())

    async def _run_pump(self) -> None:
        """Report what is waiting as soon as the loop is free, and renew leases every
        third of their length, until the client closes (then report the rest)."""
        assert self._wake is not None
        wake = self._wake
        every = self.state.lease / 3
        renewed = clock()
        while not (self._closed and not self._outbox):
            if not self._outbox and not self._closed:
                due = renewed + every if self._leases else None
                try:
                    async with asyncio.timeout_at(due):  # clock() is the loop's clock
                        await wake.wait()
                except TimeoutError:
                    pass
            wake.clear()
            ops: list[list[Any]] = []
            if clock() >= renewed + every and not self._closed:
                renewed = clock()
                by_provider: dict[str, list[str]] = {}
                for lease, provider in self._leases.items():
                    by_provider.setdefault(provider, []).append(lease)
                for provider, leases in by_provider.items():
                    ops.append(["renew", provider, self.state.lease, *leases])
            if ops or self._outbox:
                # A call that needs Redis gets the error; the pump just goes on.
                with contextlib.suppress(SharedStateError):
                    await self.run(ops)

    async def aclose(self) -> None:
        """Give back the slots still held, report what is waiting (within the
        timeout), stop the pump and close the connections."""
        for lease, provider in list(self._leases.items()):
            self.drop(lease, provider)
        self._closed = True
        if self._senders:  # asks on their way (each bounded by the timeout)
            await asyncio.wait(list(self._senders))
        pump, self._pump = self._pump, None
        if pump is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                async with asyncio.timeout(self.state.timeout * 2):
                    await asyncio.shield(pump)
            except TimeoutError:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        if self._redis is not None:
            redis, self._redis, self._script = self._redis, None, None
            await redis.aclose()


def _describe(error: BaseException) -> str:
    """A failure in a few words, never with the URL (redis-py's messages may hold it)."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    name = type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return f"{name}: {error.strerror}"
    text = str(error)
    if "://" in text or "@" in text:
        return name
    return f"{name}: {text}" if text else name
