"""``asyncprov demo``: the main job, offline.

Starts three local emulated providers (healthy, flaky, slow) on 127.0.0.1, sends a batch
of concurrent streaming requests through hedged failover, and prints who answered each
one, what was tried first, and how long the first token took. Built on the public API
and ``asyncprov.testing`` only.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import TextIO

import anyio

from asyncprov import AsyncClient, AsyncProvError, Attempt, Timeout
from asyncprov.providers import Anthropic, Gemini, OpenAICompatible, Provider, RetryProvider
from asyncprov.testing import AnthropicTestServer, GeminiTestServer, OpenAITestServer, Reply

__all__ = ["run_demo"]

HEDGE_DELAY = 0.25
SLOW_DELAY = 1.0


@dataclass
class _Outcome:
    number: int
    provider: str | None
    attempts: tuple[Attempt, ...]
    ttft: float | None
    total: float
    error: str | None = None


_FAILURES: dict[str, Reply] = {
    "529": Reply(status=529, error={"type": "overloaded_error", "message": "Overloaded"}),
    "500": Reply(status=500),
    "reset": Reply(fault="reset"),
    "429": Reply(status=429, headers={"Retry-After": "0"}),
}


async def _one(
    client: AsyncClient, group: RetryProvider, number: int, limiter: anyio.CapacityLimiter
) -> _Outcome:
    async with limiter:
        return await _stream(client, group, number)


async def _stream(client: AsyncClient, group: RetryProvider, number: int) -> _Outcome:
    started = time.perf_counter()
    try:
        stream = await client.chat.completions.create(
            model="demo-model",
            messages=f"request {number}: tell me about rivers",
            stream=True,
            provider=group,
        )
        ttft = time.perf_counter() - started
        async with stream:
            await stream.collect()
    except AsyncProvError as error:
        return _Outcome(number, None, (), None, time.perf_counter() - started, str(error))
    return _Outcome(number, stream.provider, stream.attempts, ttft, time.perf_counter() - started)


def _tried(outcome: _Outcome) -> str:
    notes = []
    for attempt in outcome.attempts:
        if attempt.ok:
            continue
        why = "lost the hedge" if attempt.error_type == "Cancelled" else attempt.error_type
        notes.append(f"{attempt.provider} ({why})")
    return ", ".join(notes) or "-"


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 hedge``, ``2 hedges``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _named(provider: Provider, name: str) -> Provider:
    """``provider`` reported (and kept healthy or not) under ``name``."""
    provider.name = name
    return provider


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _report(outcomes: list[_Outcome], wall: float, out: TextIO) -> None:
    out.write(f"\n{'req':>4}  {'answered by':<12} {'tries':>5}  {'TTFT ms':>8}  also tried\n")
    for o in sorted(outcomes, key=lambda o: o.number):
        ttft = f"{o.ttft * 1000:8.0f}" if o.ttft is not None else f"{'-':>8}"
        who = o.provider or "FAILED"
        out.write(f"{o.number:>4}  {who:<12} {len(o.attempts):>5}  {ttft}  {_tried(o)}\n")
        if o.error:
            out.write(f"      {o.error}\n")
    answered = [o for o in outcomes if o.provider]
    winners = Counter(o.provider for o in answered)
    every = [a for o in outcomes for a in o.attempts]
    failed = [a for a in every if not a.ok and a.error_type != "Cancelled"]
    hedged = [a for a in every if a.error_type == "Cancelled"]
    ttfts = [o.ttft for o in answered if o.ttft is not None]
    out.write(
        f"\n{len(answered)}/{len(outcomes)} answered in {wall:.2f} s; by "
        + ", ".join(f"{name} {count}" for name, count in winners.most_common())
        + "\n"
    )
    errors = Counter(a.error_type for a in failed)
    out.write(
        f"retries: {_count(len(every) - len(answered), 'try', 'tries')} beyond one per "
        f"request; {_count(len(failed), 'failover')} after an error"
        + (f" ({', '.join(f'{k} {v}' for k, v in errors.most_common())})" if errors else "")
        + f", {_count(len(hedged), 'hedge')} (a second provider started after "
        f"{HEDGE_DELAY * 1000:.0f} ms without content; the loser cancelled)\n"
    )
    if ttfts:
        out.write(
            f"time to first token: p50 {_percentile(ttfts, 0.5) * 1000:.0f} ms, "
            f"p95 {_percentile(ttfts, 0.95) * 1000:.0f} ms, "
            f"max {max(ttfts) * 1000:.0f} ms "
            f"(the slow provider takes {SLOW_DELAY * 1000:.0f} ms)\n"
        )


async def run_demo(
    out: TextIO, *, requests: int = 24, seed: int | None = None, concurrency: int = 32
) -> int:
    """Run the demo, writing the report to ``out``; returns the exit status.

    ``seed`` fixes which requests the flaky provider fails and each request's provider
    order; timing (who wins a hedge) can still differ a little between runs.
    """
    rng = random.Random(seed)
    # Three vendors' wire formats: healthy speaks Gemini's, flaky Anthropic's, slow
    # OpenAI's; the client reads one OpenAI-shaped stream whoever answers.
    healthy = GeminiTestServer(default=Reply(chunk_delay=0.005))
    slow = OpenAITestServer(default=Reply(delay=SLOW_DELAY, chunk_delay=0.005))
    # "flaky" is one provider to the client; behind it, one server per behaviour, so a
    # seed decides which requests fail, however the concurrent requests interleave.
    flaky = {"ok": AnthropicTestServer(default=Reply(chunk_delay=0.005))}
    flaky.update({kind: AnthropicTestServer(default=reply) for kind, reply in _FAILURES.items()})
    servers = [healthy, slow, *flaky.values()]
    plans = []
    for _ in range(requests):
        order = rng.sample(["healthy", "flaky", "slow"], 3)
        behaviour = rng.choice(list(_FAILURES)) if rng.random() < 0.5 else "ok"
        plans.append((order, behaviour))
    quiet = logging.getLogger("aiohttp.server")  # a hedge loser's disconnect is expected
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for server in servers:
                await stack.enter_async_context(server)
            members = {
                "healthy": _named(Gemini(api_key="demo", base_url=healthy.base_url), "healthy"),
                "slow": OpenAICompatible(base_url=slow.base_url, name="slow"),
            }

            def group(order: list[str], behaviour: str) -> RetryProvider:
                flaky_one = _named(
                    Anthropic(api_key="demo", base_url=flaky[behaviour].base_url), "flaky"
                )
                chosen = [members.get(name, flaky_one) for name in order]
                return RetryProvider(chosen, shuffle=False, hedge=True, hedge_delay=HEDGE_DELAY)

            out.write(
                f"asyncprov demo: {requests} concurrent streaming requests, offline, to "
                "three local providers of three wire formats\n"
                f"  healthy (Gemini's API): answers at once   flaky (Anthropic's): fails "
                f"about half the time   slow (OpenAI's): {SLOW_DELAY:.0f} s before the first byte\n"
                f"through RetryProvider (random order per request, hedged after "
                f"{HEDGE_DELAY * 1000:.0f} ms without content, {concurrency} at a time)\n"
            )
            out.flush()
            outcomes: list[_Outcome] = []
            limiter = anyio.CapacityLimiter(concurrency)
            timeout = Timeout(connect=2, first_chunk=5, idle=5, total=20)
            started = time.perf_counter()
            async with AsyncClient(timeout=timeout) as client:

                async def run(number: int) -> None:
                    order, behaviour = plans[number - 1]
                    outcome = await _one(client, group(order, behaviour), number, limiter)
                    outcomes.append(outcome)

                async with anyio.create_task_group() as tg:
                    for number in range(1, requests + 1):
                        tg.start_soon(run, number)
            _report(outcomes, time.perf_counter() - started, out)
    finally:
        quiet.setLevel(level)
    return 0 if all(o.provider for o in outcomes) else 1
