"""The retry policy: what is retried, failed over or stopped, and how long to wait."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from asyncprov import (
    APIConnectionError,
    ConnectTimeoutError,
    FirstChunkTimeoutError,
    HTTPStatusError,
    IdleTimeoutError,
    InvalidRequestError,
    MissingAuthError,
    ProviderError,
    RateLimitError,
    ResponseDecodeError,
    StreamInterruptedError,
    TotalTimeoutError,
    set_testing,
)
from asyncprov._errors import error_for_status
from asyncprov._health import ProviderHealth
from asyncprov._retry import Outcome, RetryPolicy, classify


def status_error(status: int, **headers: str) -> HTTPStatusError:
    return error_for_status(status)("x", status=status, headers=headers)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (408, Outcome.RETRY),
        (409, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
        (400, Outcome.STOP),
        (422, Outcome.STOP),
        (401, Outcome.NEXT),
        (403, Outcome.NEXT),
        (404, Outcome.NEXT),
    ],
)
def test_status_outcomes(status: int, outcome: Outcome) -> None:
    """408/409/429/5xx retry; 400/422 stop; 401/403/404 fail over."""
    assert classify(status_error(status)) is outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (APIConnectionError("reset"), Outcome.RETRY),
        (ConnectTimeoutError("t"), Outcome.RETRY),
        (FirstChunkTimeoutError("t"), Outcome.RETRY),
        (IdleTimeoutError("t"), Outcome.RETRY),
        (StreamInterruptedError("cut"), Outcome.RETRY),
        (TotalTimeoutError("t"), Outcome.STOP),
        (InvalidRequestError("bad"), Outcome.STOP),
        (ResponseDecodeError("not json", status=200), Outcome.NEXT),
        (MissingAuthError("no key"), Outcome.NEXT),
        (ProviderError("busy", error_type="server_error"), Outcome.RETRY),
        (ProviderError("slow down", error_code="429"), Outcome.RETRY),
        (ProviderError("no such model", error_type="invalid_request_error"), Outcome.NEXT),
        (RuntimeError("a bug"), Outcome.STOP),
    ],
)
def test_error_outcomes(error: BaseException, outcome: Outcome) -> None:
    """Connection errors, timeouts and truncations retry; a complete bad 200 fails over."""
    assert classify(error) is outcome


def test_backoff_grows_with_jitter_and_cap() -> None:
    """Backoff doubles from wait_initial, jitter takes up to wait_jitter of it off (never
    adds), and it stops at wait_max."""
    policy = RetryPolicy(wait_initial=0.5, wait_max=4, wait_jitter=1.0)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        waits = [policy.backoff(attempt) for _ in range(50)]
        assert all(0 <= w <= base for w in waits)
        assert len(set(waits)) > 1
    assert RetryPolicy(wait_jitter=0).backoff(2) == 1.0


def test_default_waits_never_exceed_the_nominal_schedule() -> None:
    """By default the waits are 0.5 s, 1 s, 2 s ... less at most a quarter (openai-python's)."""
    policy = RetryPolicy()
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert all(0.75 * base <= w <= base for w in waits)


def test_jitter_above_one_is_refused() -> None:
    """wait_jitter is a fraction of the wait: above 1 it could only add, so it is refused."""
    with pytest.raises(ValidationError):
        RetryPolicy(wait_jitter=1.5)


def test_retry_after_honoured_up_to_the_cap() -> None:
    """Retry-After (and retry-after-ms) set the wait; over the cap means: do not retry."""
    policy = RetryPolicy(retry_after_max=30)
    assert policy.wait_before_retry(status_error(429, **{"Retry-After": "7"}), 1) == 7.0
    assert policy.wait_before_retry(status_error(503, **{"retry-after-ms": "250"}), 1) == 0.25
    assert policy.wait_before_retry(status_error(429, **{"Retry-After": "31"}), 1) is None
    assert 0.375 <= (policy.wait_before_retry(status_error(500), 1) or 0) <= 0.5


def test_testing_switch_removes_waits() -> None:
    """set_testing(True) makes every wait zero."""
    policy = RetryPolicy(wait_initial=5)
    set_testing(True)
    try:
        assert policy.backoff(3) == 0.0
        assert policy.wait_before_retry(status_error(429, **{"Retry-After": "20"}), 1) == 0.0
    finally:
        set_testing(False)
    assert policy.backoff(1) >= 5 * 0.75


def test_health_cools_after_consecutive_failures_and_on_retry_after() -> None:
    """Three failures in a row, or a 429 with Retry-After, start a cool-down; success resets."""
    health = ProviderHealth(failures_to_cool=3, cooldown=30)
    for _ in range(2):
        health.record_failure("a", status_error(500))
    assert health.cooling_until("a") is None
    health.record_success("a")
    for _ in range(2):
        health.record_failure("a", status_error(500))
    assert health.cooling_until("a") is None  # the count restarted after the success
    health.record_failure("a", status_error(500))
    assert health.cooling_until("a") is not None
    limited = RateLimitError("x", status=429, headers={"retry-after": "12"})
    health.record_failure("b", limited)
    until = health.cooling_until("b")
    assert until is not None and health.cooling_until("c") is None


async def test_set_testing_caps_attempts_and_restores() -> None:
    """set_testing(True, attempts=1) makes one attempt per provider; leaving the block
    restores what was before (waits on, no cap)."""
    from asyncprov import AsyncClient, InternalServerError
    from asyncprov.testing import OpenAITestServer, Reply

    async with (
        OpenAITestServer(default=Reply(status=500)) as server,
        AsyncClient(base_url=server.base_url, max_retries=5) as client,
    ):
        with set_testing(True, attempts=1):
            with pytest.raises(InternalServerError):
                await client.chat.completions.create(model="m", messages="hi")
            assert RetryPolicy(max_retries=4).attempts == 1
        assert len(server.requests) == 1
    assert RetryPolicy(max_retries=4).attempts == 5
    assert RetryPolicy(wait_initial=1).backoff(1) > 0  # waits are back on
    with pytest.raises(ValueError, match="attempts must be 1 or more"):
        set_testing(True, attempts=0)
