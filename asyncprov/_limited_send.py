"""Sending one attempt's request within its provider's rate-limit budgets: a turn
waited for (queue time, not the call's own), a 429 waited out and sent again while the
budget of 429 waits lasts, and the tokens charged settled when the answer used none.
Loaded only when a client has rate limits."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._clock import clock
from ._errors import QueueTimeoutError
from ._headers import parse_retry_after

if TYPE_CHECKING:
    import aiohttp

    from ._http import HttpCall
    from ._ratelimit import AnyLimiter

__all__ = ["send_limited"]

log = logging.getLogger("asyncprov")


async def send_limited(
    call: HttpCall,
    limiter: AnyLimiter,
    url: str,
    body: Any,
    headers: Mapping[str, str],
    stream: bool,
) -> aiohttp.ClientResponse:
    """Send within the provider's budgets; a 429 pauses the provider and is sent
    again (up to ``max_429_waits`` times) instead of failing the attempt."""
    import anyio

    tokens = limiter.estimate(body) if limiter.counts_tokens else 0
    waits = call.waits_429  # one budget of 429 waits per call, retries included
    while True:
        # Time queued here is not the call's: its timeouts start when it is sent.
        queued = clock()
        try:
            with anyio.move_on_after(limiter.limit.max_wait or math.inf) as waiting:
                await limiter.acquire(tokens)
        finally:
            call.deadline.shift(clock() - queued, total=call.owns_total)
        if waiting.cancelled_caught:
            raise QueueTimeoutError(
                f"waited over {limiter.limit.max_wait} s for a turn under the rate "
                f"limit of {call.provider}",
                provider=call.provider,
                model=call.model,
                timeout=limiter.limit.max_wait,
            )
        sent = limiter.now()
        try:
            raw = await call._send(url, body, headers, stream)
        except BaseException:
            limiter.release()
            raise
        if raw.status != 429:
            limiter.answered()
            break
        wait = None
        if waits[0] < limiter.limit.max_429_waits:
            wait = limiter.on_429(
                parse_retry_after(raw.headers),
                sent_at=sent,
                waited=waits[0],
                retry_after_max=call.retry_after_max,
            )
        if wait is None:
            break  # this 429 goes to the caller
        waits[0] += 1
        call.discard(raw)
        limiter.release()
        limiter.settle(tokens, 0)  # charged again when it is sent again
        log.info("%s: 429, sending again after %.3f s", call.provider, wait)
        if wait > 0:
            queued = clock()  # waiting out a 429 is queue time, not the call's own
            await limiter.sleep(wait)
            call.deadline.shift(clock() - queued, total=call.owns_total)
    if raw.status >= 400 and tokens:  # an error answer, 429 included, used no tokens
        limiter.settle(tokens, 0)
        tokens = 0
    call.charges.append((limiter, tokens))
    return raw
