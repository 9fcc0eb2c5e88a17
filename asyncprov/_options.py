"""The settings of one call, resolved once at the top of ``create()``, and the
defaults of calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError
from ._timeouts import Timeout

__all__ = [
    "BATCH_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "RETRY_AFTER_MAX",
    "CallOptions",
    "checked_hedge_delay",
    "checked_mapping",
    "checked_retries",
]

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


def checked_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_retries must be a whole number of 0 or more, not {value!r}")
    return value


def checked_hedge_delay(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"hedge_delay must be a number of seconds >= 0, not {value!r}")
    return float(value)


def checked_mapping(
    name: str, value: Mapping[str, Any] | None, *, headers: bool = False
) -> Mapping[str, Any] | None:
    """A per-call mapping, checked (header names and values: text on one line)."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping, not {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or (headers and not isinstance(item, str)):
            raise ConfigurationError(f"{name} keys{' and values' if headers else ''} must be text")
        if headers and any(c in key + item for c in "\r\n\0"):
            raise ConfigurationError(f"{name}[{key.strip()!r}] contains a line break")
    return dict(value)
