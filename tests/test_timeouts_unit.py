"""Unit tests for ``Timeout``, ``as_timeout`` and ``Deadline`` (``asyncprov._timeouts``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

import asyncprov
import asyncprov._timeouts
from asyncprov import ConfigurationError, Timeout
from asyncprov._errors import FirstChunkTimeoutError, IdleTimeoutError, TotalTimeoutError
from asyncprov._timeouts import Deadline, as_timeout


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(asyncprov._timeouts, "clock", fake)
    return fake


# --- Timeout and as_timeout ---------------------------------------------------------------


def test_timeout_defaults() -> None:
    """Defaults are connect 10 s, first_chunk 120 s, idle 60 s, total 600 s."""
    t = Timeout()
    assert (t.connect, t.first_chunk, t.idle, t.total) == (10.0, 120.0, 60.0, 600.0)


def test_timeout_repr_as_documented() -> None:
    """The docstring example's repr holds."""
    assert repr(Timeout(first_chunk=5, idle=10)) == (
        "Timeout(connect=10.0, first_chunk=5.0, idle=10.0, total=600.0)"
    )


def test_timeout_none_means_unlimited() -> None:
    """Each phase may be None (no limit)."""
    t = Timeout(connect=None, first_chunk=None, idle=None, total=None)
    assert (t.connect, t.first_chunk, t.idle, t.total) == (None, None, None, None)


@pytest.mark.parametrize("field", ["connect", "first_chunk", "idle", "total"])
@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_timeout_rejects_non_positive(field: str, value: float) -> None:
    """Zero and negative phase values are rejected."""
    with pytest.raises(ValidationError):
        Timeout.model_validate({field: value})


def test_timeout_rejects_unknown_field_and_is_frozen() -> None:
    """Unknown fields are rejected and a Timeout cannot be changed."""
    with pytest.raises(ValidationError):
        Timeout.model_validate({"read": 5})
    t = Timeout()
    with pytest.raises(ValidationError):
        t.idle = 5  # type: ignore[misc]


def test_as_timeout_none_gives_default() -> None:
    """None gives the default Timeout (or the one passed as default)."""
    assert as_timeout(None) == Timeout()
    custom = Timeout(idle=3)
    assert as_timeout(None, custom) is custom


def test_as_timeout_passes_timeout_through() -> None:
    """A Timeout is returned as it is."""
    t = Timeout(connect=1, total=2)
    assert as_timeout(t) is t
    assert as_timeout(t, Timeout(idle=9)) is t


@pytest.mark.parametrize(("value", "total"), [(5, 5.0), (2.5, 2.5), (0.01, 0.01)])
def test_as_timeout_number_sets_only_total(value: float, total: float) -> None:
    """A bare number sets the total and leaves the other phases at their defaults."""
    t = as_timeout(value)
    assert t == Timeout(total=total)
    assert isinstance(t.total, float)


def test_as_timeout_number_keeps_custom_default() -> None:
    """A bare number overrides only the total of a custom default."""
    assert as_timeout(7, Timeout(idle=3, connect=1)) == Timeout(idle=3, connect=1, total=7)


@pytest.mark.parametrize("value", [-1, 0, 0.0, -0.1, True, False, "5", math.nan, [5], b"5"])
def test_as_timeout_rejects_bad_values(value: Any) -> None:
    """Non-positive numbers, booleans, strings and other types raise ConfigurationError."""
    with pytest.raises(asyncprov.ConfigurationError, match="timeout must be a positive number"):
        as_timeout(value)


def test_as_timeout_error_is_value_error() -> None:
    """The error is also a ValueError."""
    with pytest.raises(ValueError):
        as_timeout(-1)
    assert issubclass(ConfigurationError, ValueError)


# --- Deadline -----------------------------------------------------------------------------


def test_deadline_first_chunk_bound(clock: FakeClock) -> None:
    """Before content the deadline is start + first_chunk."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    assert d.at() == 1005.0
    assert d.has_content is False
    clock.advance(3)
    assert d.at() == 1005.0


def test_deadline_idle_bound_after_progress(clock: FakeClock) -> None:
    """After content the deadline is the last progress + idle."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    clock.advance(4)
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    assert d.has_content is True
    assert d.at() == 1006.0
    clock.advance(1.5)
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    assert d.at() == 1007.5


def test_deadline_never_beyond_total(clock: FakeClock) -> None:
    """The deadline never passes start + total, before or after content."""
    d = Deadline(Timeout(first_chunk=50, idle=30, total=10))
    assert d.at() == 1010.0
    clock.advance(8)
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    assert d.at() == 1010.0
    assert d.total_at == 1010.0


def test_deadline_shared_total(clock: FakeClock) -> None:
    """An attempt given the call's total_at keeps it instead of starting its own."""
    d = Deadline(Timeout(first_chunk=50, total=600), total_at=1020.0)
    assert d.total_at == 1020.0
    assert d.at() == 1020.0
    attempt = d.attempt()
    assert attempt.total_at == 1020.0
    assert attempt.parent is d


def test_deadline_without_content_stays_at_first_chunk(clock: FakeClock) -> None:
    """Bytes that are not content (a non-streaming body arriving) never move it."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    clock.advance(4)
    assert d.at() == 1005.0
    clock.advance(1)
    assert d.expired().phase == "first_chunk"


def test_deadline_shift_moves_attempt_and_call(clock: FakeClock) -> None:
    """Time queued outside the call moves the attempt's first_chunk and every total."""
    call = Deadline(Timeout(first_chunk=5, total=100))
    attempt = call.attempt()
    clock.advance(30)
    attempt.shift(30)
    assert attempt.at() == 1035.0
    assert (attempt.total_at, call.total_at) == (1130.0, 1130.0)


def test_deadline_unlimited(clock: FakeClock) -> None:
    """With every phase None the deadline is infinite."""
    d = Deadline(Timeout(connect=None, first_chunk=None, idle=None, total=None))
    assert d.at() == math.inf
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    assert d.at() == math.inf


def test_deadline_pause_resume_shifts_idle(clock: FakeClock) -> None:
    """Time the caller spends away between pause() and resume() does not count as idle."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    clock.advance(1)
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    assert d.at() == 1003.0
    d.delivered(False)  # a chunk without content went to the caller
    clock.advance(10)
    d.back()
    assert d.at() == 1013.0
    clock.advance(2)
    assert d.expired().phase == "idle"


def test_deadline_pause_resume_still_capped_by_total(clock: FakeClock) -> None:
    """A long time away shifts idle but never past the total."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=20))
    d.delivered(True)  # a content chunk went to the caller
    clock.advance(30)
    d.back()
    assert d.at() == 1020.0


def test_deadline_resume_without_pause(clock: FakeClock) -> None:
    """resume() without a pause (or a second resume) changes nothing."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    clock.advance(1)
    d.back()
    assert d.at() == 1002.0
    d.delivered(False)  # a chunk without content went to the caller
    clock.advance(3)
    d.back()
    clock.advance(3)
    d.back()
    assert d.at() == 1005.0


def test_deadline_idle_restarts_when_the_caller_asks_again(clock: FakeClock) -> None:
    """After content, idle runs from when the caller asks for the next chunk, however
    long it kept the last one, and the deadline stays put while the caller waits."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    d.delivered(True)
    clock.advance(5)  # the caller's own time with the chunk
    assert d.at() == 1100.0  # away: only the total counts
    d.back()
    assert d.at() == 1007.0
    clock.advance(1.5)
    assert d.at() == 1007.0
    clock.advance(0.5)
    assert d.expired().phase == "idle"


def test_deadline_chunk_without_content_keeps_idle_running(clock: FakeClock) -> None:
    """A chunk that is not content does not restart idle; only the caller's time away
    from it is added."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    d.delivered(True)
    d.back()
    assert d.at() == 1002.0
    clock.advance(1)
    d.delivered(False)  # a keepalive-like chunk arrived within the wait
    clock.advance(5)  # the caller's own time with it
    d.back()
    assert d.at() == 1007.0


def test_deadline_away_and_held_count_only_the_total(clock: FakeClock) -> None:
    """While a chunk is with the caller, or chunks are held for a consumer, a wait is
    bounded by the total only."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    d.delivered(True)
    assert d.at() == 1100.0
    d.back()
    assert d.at() == 1002.0
    d.hold()
    clock.advance(10)
    assert d.at() == 1100.0
    d.release()
    assert d.at() == 1012.0


def test_expired_first_chunk(clock: FakeClock) -> None:
    """Running out before any content is a FirstChunkTimeoutError."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    clock.advance(5)
    exc = d.expired(provider="P", model="m")
    assert type(exc) is FirstChunkTimeoutError
    assert exc.timeout == 5.0
    assert exc.phase == "first_chunk"
    assert exc.provider == "P"
    assert exc.model == "m"


def test_expired_idle(clock: FakeClock) -> None:
    """Running out after content is an IdleTimeoutError."""
    d = Deadline(Timeout(first_chunk=5, idle=2, total=100))
    clock.advance(1)
    d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    clock.advance(2)
    exc = d.expired()
    assert type(exc) is IdleTimeoutError
    assert exc.timeout == 2.0
    assert exc.phase == "idle"


@pytest.mark.parametrize("content", [False, True])
def test_expired_total(clock: FakeClock, content: bool) -> None:
    """Reaching the total is a TotalTimeoutError, with or without content."""
    d = Deadline(Timeout(first_chunk=50, idle=50, total=10))
    if content:
        clock.advance(5)
        d.delivered(True)
    d.back()  # the caller asks for the next chunk at once
    clock.advance(10)
    exc = d.expired(provider="P", model="m")
    assert type(exc) is TotalTimeoutError
    assert exc.timeout == 10.0
    assert exc.phase == "total"
    assert str(exc) == "the call took longer than its total timeout of 10.0 s (provider=P, model=m)"


def test_expired_total_when_all_bounds_coincide(clock: FakeClock) -> None:
    """When first_chunk and total end together, the total wins."""
    d = Deadline(Timeout(first_chunk=10, total=10))
    clock.advance(10)
    assert type(d.expired()) is TotalTimeoutError
