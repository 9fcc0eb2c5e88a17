"""The settings of one call, resolved once at the top of ``create()``, and the
defaults of calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._timeouts import Timeout

__all__ = ["BATCH_CONCURRENCY", "DEFAULT_MAX_RETRIES", "RETRY_AFTER_MAX", "CallOptions"]

DEFAULT_MAX_RETRIES = 2
"""Retries after a lone provider's first attempt unless told otherwise (openai-python's)."""

RETRY_AFTER_MAX = 30.0
"""The longest ``Retry-After`` waited out unless a ``RetryPolicy`` says otherwise: by
retries, and by a rate limiter pausing its provider after a 429."""

BATCH_CONCURRENCY = 64
"""How many requests of a batch are in flight at once unless told otherwise."""


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one call was asked for beyond its body, merged once with the client's
    defaults; every layer below reads it and none re-derives it. (Where the call goes
    and with which key, proxy and headers is resolved into the provider itself: see
    ``ProviderSettings``.)

    Attributes:
        timeout: the call's timeouts (the call's, else the client's).
        max_retries: retries after the first attempt on a lone provider.
        hedge_delay: start the next failover candidate after this long without content.
        extra_query: query parameters added to every request of the call.
        extra_body: fields merged into every request body of the call, last.
    """

    timeout: Timeout
    max_retries: int
    hedge_delay: float | None = None
    extra_query: Mapping[str, str] | None = None
    extra_body: Mapping[str, Any] | None = None
