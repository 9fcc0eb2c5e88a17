"""Failover: ``RetryProvider`` and the attempt engine behind it.

One anyio task group per call, entered and left inside a single ``await`` (the race);
the winning stream is then read outside it, so no ``yield`` ever sits inside a task
group or cancel scope. Attempts start in order (happy-eyeballs shape): the next one
when the current fails, or, when hedging, also when the current has produced no content
within ``hedge_delay``. The first to produce content wins; the others are cancelled and
their connections closed at once. Nothing is failed over once content has reached the
caller.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import anyio

from ._clock import clock
from ._errors import ConfigurationError, RetryNoProviderError
from ._http import HttpCall
from ._retry import Outcome, RetryPolicy, classify, final_error, stop_error
from ._streaming import AsyncStream, complete
from ._types import Attempt, ChatCompletion, ChatCompletionChunk, ChatRequest, trusted
from .providers.base import Provider, ProviderSettings

__all__ = ["LOST_RACE", "Opener", "RetryProvider", "open_stream", "retry_one"]

log = logging.getLogger("asyncprov")

_T = TypeVar("_T")

Opener = Callable[[Provider, ChatRequest, HttpCall], Awaitable[_T]]
"""Makes one attempt: ``complete`` for a whole reply, ``open_stream`` for a stream."""

LOST_RACE = "stopped: another attempt answered"
"""The ``error`` of a cancelled attempt's record when it lost a hedge race (the call
itself being cancelled says so otherwise)."""


@dataclass
class _Candidate:
    provider: Provider
    attempt: int  # 1-based, on this provider


Reason = Literal["first", "retry", "failover", "hedge"]


@dataclass
class _Start:
    """When and why an attempt started, for its record."""

    reason: Reason
    waited: float
    at: float = 0.0  # time.time()
    clock: float = 0.0

    def now(self) -> _Start:
        self.at, self.clock = time.time(), clock()
        return self


def _message(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error) or "no message"


def _record(
    http: HttpCall,
    provider: Provider,
    number: int,
    start: _Start,
    error: BaseException | None,
    *,
    stopped: str | None = None,
) -> None:
    """The attempt's record; ``stopped`` says why a cancelled one was stopped."""
    failed = error is not None or stopped is not None
    record = {
        "provider": provider.name,
        "ok": not failed,
        "error_type": "Cancelled" if stopped else type(error).__name__ if error else None,
        "error": stopped or (_message(error) if error else None),
        "seconds": round(clock() - start.clock, 6),
        "number": number,
        "reason": start.reason,
        "waited": float(start.waited),
        "started_at": start.at,
    }
    http.attempts.append(trusted(Attempt, record))  # our own values, every field


async def retry_one(
    provider: Provider,
    request: ChatRequest,
    http: HttpCall,
    opener: Opener[_T],
    policy: RetryPolicy,
) -> _T:
    """Attempts on one provider, up to ``policy.attempts``, with backoff between them
    (no task group: one attempt at a time). A lone provider's own retries never wait
    for its cool-down; ``Retry-After`` is honoured up to ``policy.retry_after_max``."""
    failures: list[tuple[str, Exception]] = []
    health = http.health
    http.provider, http.proxy = provider.name, provider.proxy  # the call serves attempt 1
    http.retry_after_max = policy.retry_after_max
    start = _Start("first", 0.0)
    for number in range(1, policy.attempts + 1):
        attempt = (
            http if number == 1 else http.attempt(provider=provider.name, proxy=provider.proxy)
        )
        start.now()
        try:
            result = await opener(provider, request, attempt)
        except anyio.get_cancelled_exc_class():
            _record(http, provider, number, start, None, stopped="stopped: the call was cancelled")
            raise
        except Exception as error:
            _record(http, provider, number, start, error)
            failures.append((provider.name, error))
            outcome = classify(error)
            if outcome is Outcome.STOP:
                stop_error(error, failures)  # lists the attempts before it on the error
                raise
            health.record_failure(provider.name, error)
            if outcome is not Outcome.RETRY or number == policy.attempts:
                break
            wait = policy.wait_before_retry(error, number)
            if wait is None or clock() + wait >= http.deadline.total_at:
                break  # no retry can start in time: the failure itself is the answer
            log.debug("attempt %d on %s failed (%s); retrying", number, provider.name, error)
            await anyio.sleep(wait)
            start = _Start("retry", wait)
        else:
            _record(http, provider, number, start, None)
            health.record_success(provider.name)
            return result
    raise final_error(failures)


def _request_for(provider: Provider, request: ChatRequest) -> ChatRequest:
    """The request with a model this provider serves (its default if it lists others)."""
    model = request.model
    if provider.models and model not in provider.models and model not in provider.model_aliases:
        model = provider.default_model or model
    return request if model == request.model else request.model_copy(update={"model": model})


class _Race(Generic[_T]):
    """One call's attempts; ``run`` returns the first success."""

    def __init__(
        self,
        owner: RetryProvider,
        request: ChatRequest,
        http: HttpCall,
        opener: Callable[[Provider, ChatRequest, HttpCall], Awaitable[_T]],
    ) -> None:
        self.owner = owner
        self.request = request
        self.http = http
        self.opener = opener
        self.health = http.health
        self.failures: list[tuple[str, Exception]] = []
        self.winner: tuple[Provider, _T] | None = None
        self.fatal: Exception | None = None
        self.running = 0
        self.changed = anyio.Event()
        self.ruled_out: set[str] = set()
        self.retry_at: dict[str, float] = {}
        self.queue: deque[_Candidate] = deque()
        self.last_failed: str | None = None  # the provider whose failure came last

    def _pop(self) -> tuple[_Candidate, float] | None:
        """The next candidate and the clock time it may start at."""
        usable = [c for c in self.queue if c.provider.name not in self.ruled_out]
        if not usable:
            self.queue.clear()
            return None
        # A cooling provider is passed over while another is ready; when none is, the
        # next candidate goes now: a cool-down never delays a provider's own retries.
        health = self.health
        ready = [c for c in usable if health.cooling_until(c.provider.name) is None]
        chosen = ready[0] if ready else usable[0]
        self.queue.remove(chosen)
        return chosen, self.retry_at.get(chosen.provider.name, 0.0)

    async def _attempt(self, candidate: _Candidate, start: _Start, tg: anyio.abc.TaskGroup) -> None:
        provider = candidate.provider
        http = self.http.attempt(provider=provider.name, proxy=provider.proxy)
        http.retry_after_max = self.owner.policy.retry_after_max
        http.owns_total = self.running == 1  # queueing beside a running sibling is not idle
        log.debug(
            "attempt %d on %s (model %s)", candidate.attempt, provider.name, self.request.model
        )
        start.now()
        try:
            result = await self.opener(provider, _request_for(provider, self.request), http)
        except anyio.get_cancelled_exc_class():
            why = LOST_RACE if self.winner else "stopped: the call was cancelled"
            _record(self.http, provider, candidate.attempt, start, None, stopped=why)
            raise
        except Exception as error:
            _record(self.http, provider, candidate.attempt, start, error)
            self._failed(candidate, error, tg)
        else:
            _record(self.http, provider, candidate.attempt, start, None)
            self.health.record_success(provider.name)
            if self.winner is None:
                self.winner = (provider, result)
                tg.cancel_scope.cancel()
            elif isinstance(result, AsyncStream):  # a second success, too late: close it
                with anyio.CancelScope(shield=True):
                    await result.aclose()
        finally:
            self.running -= 1
            self.changed.set()

    def _failed(self, candidate: _Candidate, error: Exception, tg: anyio.abc.TaskGroup) -> None:
        provider = candidate.provider
        self.failures.append((provider.name, error))
        self.last_failed = provider.name
        outcome = classify(error)
        log.debug("attempt %d on %s failed: %s", candidate.attempt, provider.name, error)
        if outcome is Outcome.STOP:
            self.fatal = error
            tg.cancel_scope.cancel()
            return
        self.health.record_failure(provider.name, error)
        wait = (
            self.owner.policy.wait_before_retry(error, candidate.attempt)
            if outcome is Outcome.RETRY
            else None
        )
        if wait is None:
            self.ruled_out.add(provider.name)
        else:
            self.retry_at[provider.name] = clock() + wait
        following = next((c for c in self.queue if c.provider.name not in self.ruled_out), None)
        if following is not None and following.provider.name != provider.name:
            log.info(
                "failing over from %s to %s: %s",
                provider.name,
                following.provider.name,
                type(error).__name__,
            )

    async def run(self) -> tuple[Provider, _T]:
        self.queue.extend(self.owner.schedule(self.request))
        if not self.queue:
            raise RetryNoProviderError(self.owner.why_no_candidates(self.request))
        if self.health.is_shared:  # other processes' cool-downs count before picking
            await self.health.refresh(c.provider.name for c in self.queue)
        hedge = self.http.options.hedge_delay
        if hedge is None and self.owner.hedge:
            hedge = self.owner.hedge_delay
        async with anyio.create_task_group() as tg:
            # Every attempt is bounded by the call's deadline at the HTTP edge, so this
            # loop ends when they do; it only waits itself for a retry's start.
            launch, hedged = True, False
            while True:
                if launch:
                    launch = False
                    picked = self._pop()
                    if picked is not None and picked[1] >= self.http.deadline.total_at:
                        self.queue.clear()  # no retry could start before the total
                        picked = None
                    if picked is None and self.running == 0:
                        break
                    if picked is not None:
                        candidate, start = picked
                        waited = max(0.0, start - clock())
                        reason: Reason = (
                            "hedge"
                            if hedged
                            else "first"
                            if self.last_failed is None
                            else "retry"
                            if self.last_failed == candidate.provider.name
                            else "failover"
                        )
                        await anyio.sleep(waited)
                        self.running += 1
                        tg.start_soon(self._attempt, candidate, _Start(reason, waited), tg)
                self.changed = anyio.Event()
                if hedge is not None and self.queue:
                    with anyio.move_on_after(hedge) as waiting:
                        await self.changed.wait()
                    hedged = waiting.cancelled_caught
                else:
                    await self.changed.wait()
                    hedged = False
                launch = True  # a failure, or a hedge delay with no content yet
        if self.winner is not None:
            return self.winner
        if self.fatal is not None:
            raise stop_error(self.fatal, self.failures)
        if not self.failures:
            raise RetryNoProviderError("no provider could be tried")
        raise final_error(self.failures)


async def open_stream(provider: Provider, request: ChatRequest, http: HttpCall) -> AsyncStream:
    """Start a stream on ``provider`` and read up to its first content, so that every
    failure before content is raised here (and can be retried)."""
    stream = AsyncStream(
        provider.stream(request, http),
        http.deadline,
        provider=provider.name,
        abort=http.abort,
        on_usage=http.settle_usage,
    )
    try:
        await stream._start()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        raise
    return stream


class RetryProvider(Provider):
    """Fail over between providers: itself a Provider, usable anywhere one is.

    Args:
        providers: provider classes or instances, tried in this order (shuffled
            first unless ``shuffle=False``).
        shuffle: spread load by trying the providers in random order.
        single_provider_retry: retry the first provider instead of failing over: up
            to ``max_retries`` retries after its first attempt.
        max_retries: retries after the first attempt with ``single_provider_retry``
            (default 2: at most 3 attempts). Without it each provider is tried once:
            failing over is the retry. The client's own ``max_retries`` is not added
            on top: a group's settings govern its members.
        hedge: start the next candidate when the current one has produced no
            content within ``hedge_delay`` seconds (and at once when it fails); the
            first to produce content wins and the others are cancelled.
        hedge_delay: see ``hedge``.
        policy: backoff and ``Retry-After`` limits (``RetryPolicy``); give either it
            or ``max_retries``.

    Example:
        >>> RetryProvider([OpenaiChat, Reka], shuffle=False, hedge=True, hedge_delay=1.5)
    """

    name = "RetryProvider"
    supports_images = True
    is_group = True

    def __init__(
        self,
        providers: Sequence[Provider | type[Provider]],
        *,
        shuffle: bool = True,
        single_provider_retry: bool = False,
        max_retries: int | None = None,
        hedge: bool = False,
        hedge_delay: float = 2.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.providers: list[Provider] = []
        seen: dict[str, int] = {}
        for given in providers:
            provider = given if isinstance(given, Provider) else given.default()
            count = seen[provider.name] = seen.get(provider.name, 0) + 1
            if count > 1:  # failover and health tell providers apart by name
                provider = copy.copy(provider)
                provider.name = f"{provider.name}#{count}"
            self.providers.append(provider)
        self.shuffle = shuffle
        self.single_provider_retry = single_provider_retry
        if policy is not None and max_retries is not None:
            raise ConfigurationError(
                "give RetryProvider either max_retries or policy=RetryPolicy(max_retries=...)"
            )
        self.policy = policy or RetryPolicy(max_retries=2 if max_retries is None else max_retries)
        self.hedge = hedge
        self.hedge_delay = hedge_delay

    def __repr__(self) -> str:
        names = ", ".join(p.name for p in self.providers)
        return f"RetryProvider([{names}], shuffle={self.shuffle}, hedge={self.hedge})"

    def resolved(self, settings: ProviderSettings) -> Provider:
        members = [p.resolved(settings) for p in self.providers]
        if all(new is old for new, old in zip(members, self.providers, strict=True)):
            return self
        clone = copy.copy(self)
        clone.providers = members
        return clone

    def resolve_model(self, model: str | None) -> str:
        if model:
            return model
        for provider in self.providers:
            if provider.default_model:
                return provider.default_model
        return super().resolve_model(model)

    def _usable(self, request: ChatRequest) -> list[Provider]:
        return [
            p
            for p in self.providers
            if (p.supports_images or not request.has_images())
            and (p.supports_stream or not request.stream)
        ]

    def schedule(self, request: ChatRequest) -> list[_Candidate]:
        """The attempts to make, in order."""
        order = self._usable(request)
        if self.shuffle:
            random.shuffle(order)
        if self.single_provider_retry and order:
            return [_Candidate(order[0], n) for n in range(1, self.policy.attempts + 1)]
        return [_Candidate(p, 1) for p in order]

    def why_no_candidates(self, request: ChatRequest) -> str:
        """Why ``schedule`` is empty."""
        if not self.providers:
            return "RetryProvider was given no providers"
        need = "images" if request.has_images() else "streaming"
        return f"none of {', '.join(p.name for p in self.providers)} supports {need}"

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        _, winner = await _Race(self, request, http, open_stream).run()
        try:
            # Content has reached the caller: a failure from here on is the winner's
            # StreamInterruptedError; nothing fails over or splices another reply in.
            async for chunk in winner:
                yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await winner.aclose()

    async def complete(self, request: ChatRequest, http: HttpCall) -> ChatCompletion:
        _, completion = await _Race(self, request, http, complete).run()
        return completion
