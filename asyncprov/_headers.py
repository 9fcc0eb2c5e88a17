"""What a response's headers say about waiting: ``Retry-After`` and ``retry-after-ms``."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Mapping

__all__ = ["parse_retry_after"]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        wait = _seconds(ms, scale=1000.0)
        if wait is not None:
            return wait
    value = lowered.get("retry-after")
    if value is None:
        return None
    wait = _seconds(value)
    if wait is not None:
        return wait
    import email.utils  # only HTTP-date values need it; kept off the import path

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: str, *, scale: float = 1.0) -> float | None:
    try:
        number = float(value) / scale
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None
