"""Tests for the exception tree and helpers in ``asyncprov._errors``."""

from __future__ import annotations

import builtins
import datetime as dt
import email.utils
import inspect
import os
import re
import time
from collections.abc import Iterator

import pytest

import asyncprov
from asyncprov import _errors
from asyncprov._errors import (
    SNIPPET_LIMIT,
    APIError,
    APITimeoutError,
    AsyncProvError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectTimeoutError,
    FirstChunkTimeoutError,
    HTTPStatusError,
    IdleTimeoutError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TotalTimeoutError,
    UnprocessableEntityError,
    error_for_status,
)
from asyncprov._headers import parse_retry_after

ELLIPSIS = "\u2026"

EXPORTED_EXCEPTIONS = [
    obj
    for name in _errors.__all__
    if isinstance(obj := getattr(_errors, name), type) and issubclass(obj, BaseException)
]
MODULE_EXCEPTIONS = {
    name: obj
    for name, obj in inspect.getmembers(_errors, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == _errors.__name__
}


def _tree() -> list[tuple[str, int, str]]:
    """(name, column, rest of line) for each node of the docstring tree."""
    doc = _errors.__doc__ or ""
    body = doc.split("::", 1)[1]
    nodes = []
    for line in body.splitlines():
        match = re.search(r"[A-Za-z]\w*", line)
        if match:
            nodes.append((match.group(), match.start(), line[match.end() :]))
    return nodes


def test_exported_exceptions_found() -> None:
    """__all__ exports the module's exception classes (a sanity check for the tests below)."""
    assert {cls.__name__ for cls in EXPORTED_EXCEPTIONS} == set(MODULE_EXCEPTIONS)
    assert len(EXPORTED_EXCEPTIONS) == 38


@pytest.mark.parametrize("cls", EXPORTED_EXCEPTIONS, ids=lambda c: c.__name__)
def test_exception_is_rooted_and_documented(cls: type[BaseException]) -> None:
    """Every exported exception subclasses AsyncProvError and has its own one-line docstring."""
    assert issubclass(cls, AsyncProvError)
    doc = cls.__dict__.get("__doc__")
    assert isinstance(doc, str)
    assert doc.strip() != ""
    assert "\n" not in doc.strip()


@pytest.mark.parametrize("cls", EXPORTED_EXCEPTIONS, ids=lambda c: c.__name__)
def test_exception_reexported_from_package(cls: type[BaseException]) -> None:
    """Every exception is reachable as ``asyncprov.<Name>``."""
    assert getattr(asyncprov, cls.__name__) is cls


def test_docstring_tree_names_every_exception() -> None:
    """The tree in the module docstring names exactly the module's exception classes, once each."""
    names = [name for name, _, _ in _tree()]
    assert len(names) == len(set(names))
    assert set(names) == set(MODULE_EXCEPTIONS)


def test_docstring_tree_matches_inheritance() -> None:
    """Each node of the docstring tree is a direct subclass of the node it hangs under."""
    stack: list[tuple[str, int]] = []
    checked = 0
    for name, column, _ in _tree():
        while stack and stack[-1][1] >= column:
            stack.pop()
        cls = MODULE_EXCEPTIONS[name]
        if stack:
            assert MODULE_EXCEPTIONS[stack[-1][0]] is cls.__bases__[0], name
            checked += 1
        else:
            assert cls is AsyncProvError
        stack.append((name, column))
    assert checked == len(MODULE_EXCEPTIONS) - 1


def test_docstring_tree_also_builtins() -> None:
    """An ``(also X)`` note in the tree means the class really is a builtin X."""
    notes = {}
    for name, _, rest in _tree():
        match = re.search(r"also (\w+)", rest)
        if match:
            notes[name] = match.group(1)
    assert notes == {
        "ConfigurationError": "ValueError",
        "InvalidRequestError": "ValueError",
        "APITimeoutError": "TimeoutError",
        "StreamTimeoutError": "TimeoutError",
        "RetryProviderError": "ExceptionGroup",
    }
    for name, builtin in notes.items():
        assert issubclass(MODULE_EXCEPTIONS[name], getattr(builtins, builtin))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (418, HTTPStatusError),
    ],
)
def test_error_for_status(status: int, cls: type[HTTPStatusError]) -> None:
    """Each HTTP error status maps to its class; 5xx to InternalServerError, others the base."""
    assert error_for_status(status) is cls


# --- parse_retry_after ------------------------------------------------------------------


def _http_date(offset: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "9", "retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0),
        ({"Retry-After": "7"}, 7.0),
        ({"RETRY-AFTER": "3"}, 3.0),
        ({"Retry-After-Ms": "1500"}, 1.5),
        ({"RETRY-AFTER-MS": "2000", "Retry-After": "30"}, 2.0),
    ],
)
def test_parse_retry_after_numbers(headers: dict[str, str], expected: float) -> None:
    """Seconds and milliseconds are parsed, retry-after-ms wins, header names ignore case."""
    assert parse_retry_after(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "application/json"},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "Mon, 99 Foo 20xx"},
        {"retry-after-ms": "later"},
    ],
)
def test_parse_retry_after_missing_or_garbage(headers: dict[str, str]) -> None:
    """No header, or a value that is neither a number nor an HTTP date, gives None."""
    assert parse_retry_after(headers) is None


@pytest.mark.parametrize("name", ["retry-after", "Retry-After"])
def test_parse_retry_after_future_http_date(name: str) -> None:
    """An HTTP date about 30 s ahead gives about 30 seconds."""
    value = parse_retry_after({name: _http_date(30)})
    assert value is not None
    assert 28.0 <= value <= 32.0


def test_parse_retry_after_past_http_date() -> None:
    """An HTTP date in the past gives 0, never a negative wait."""
    assert parse_retry_after({"retry-after": _http_date(-3600)}) == 0.0


@pytest.fixture
def _local_time_utc_minus_5() -> Iterator[None]:
    """Run with the process's local time zone at UTC-5 (no tzdata needed)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XST+5"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("_local_time_utc_minus_5")
@pytest.mark.parametrize("form", ["imf", "rfc850", "asctime"])
def test_parse_retry_after_http_date_forms_are_gmt(form: str) -> None:
    """All three HTTP-date forms (RFC 9110 5.6.7) are GMT, whatever the local time zone."""
    # KNOWN BUG (fails for "asctime"): parse_retry_after passes the naive datetime
    # email.utils returns for the asctime form to .timestamp(), which reads it as
    # local time, so under UTC-5 a date 30 s ahead comes back as about 18030 s.
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    value = {
        "imf": email.utils.format_datetime(when, usegmt=True),
        "rfc850": when.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        "asctime": when.strftime("%a %b %d %H:%M:%S %Y"),
    }[form]
    seconds = parse_retry_after({"retry-after": value})
    assert seconds is not None
    assert 28.0 <= seconds <= 32.0


# --- HTTPStatusError ----------------------------------------------------------------------


def test_http_status_error_fields() -> None:
    """HTTPStatusError keeps the status, lower-cased headers, the body and a parsed retry_after."""
    exc = RateLimitError(
        "slow down",
        status=429,
        provider="OpenaiChat",
        model="gpt-4o",
        body=b'  {"error": "rate limited"}\n',
        headers={"Retry-After": "12", "X-Request-ID": "req_1"},
        error_type="rate_limit_error",
        error_code="rate_limit_exceeded",
    )
    assert exc.status == 429
    assert exc.headers == {"retry-after": "12", "x-request-id": "req_1"}
    assert exc.body == '{"error": "rate limited"}'
    assert exc.retry_after == 12.0
    assert exc.error_type == "rate_limit_error"
    assert exc.error_code == "rate_limit_exceeded"
    assert exc.provider == "OpenaiChat"
    assert exc.model == "gpt-4o"
    assert exc.message == "slow down"


def test_http_status_error_str() -> None:
    """str() shows the status, the message, the provider and the model."""
    exc = HTTPStatusError("slow down", status=429, provider="OpenaiChat", model="gpt-4o")
    assert str(exc) == "HTTP 429: slow down (provider=OpenaiChat, model=gpt-4o)"


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        (None, None, "HTTP 500: boom"),
        ("Reka", None, "HTTP 500: boom (provider=Reka)"),
        (None, "reka-core", "HTTP 500: boom (model=reka-core)"),
    ],
)
def test_http_status_error_str_partial(
    provider: str | None, model: str | None, expected: str
) -> None:
    """str() leaves out whichever of provider and model is unknown."""
    exc = InternalServerError("boom", status=500, provider=provider, model=model)
    assert str(exc) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, ""),
        ("", ""),
        ("x" * SNIPPET_LIMIT, "x" * SNIPPET_LIMIT),
        ("x" * (SNIPPET_LIMIT + 1), "x" * SNIPPET_LIMIT + ELLIPSIS),
        (b"y" * (SNIPPET_LIMIT * 4), "y" * SNIPPET_LIMIT + ELLIPSIS),
        (b"bad \xff byte", "bad \ufffd byte"),
    ],
)
def test_http_status_error_body_snippet(body: bytes | str | None, expected: str) -> None:
    """The body is kept as text, cut to SNIPPET_LIMIT characters with an ellipsis when longer."""
    exc = BadRequestError("bad", status=400, body=body)
    assert exc.body == expected


def test_http_status_error_without_headers() -> None:
    """No headers gives an empty dict and no retry_after."""
    exc = InternalServerError("boom", status=503)
    assert exc.headers == {}
    assert exc.retry_after is None


def test_http_status_error_retry_after_ms_header() -> None:
    """retry_after comes from retry-after-ms when present, whatever its case."""
    exc = RateLimitError("slow", status=429, headers={"Retry-After-Ms": "750", "Retry-After": "5"})
    assert exc.retry_after == 0.75


# --- timeouts and value errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "phase"),
    [
        (ConnectTimeoutError, "connect"),
        (FirstChunkTimeoutError, "first_chunk"),
        (IdleTimeoutError, "idle"),
        (TotalTimeoutError, "total"),
    ],
)
def test_timeout_errors(cls: type[APITimeoutError], phase: str) -> None:
    """Timeout errors are APIError and builtin TimeoutError and name their phase."""
    exc = cls("too slow", provider="P", model="m", timeout=2.5)
    assert isinstance(exc, APITimeoutError)
    assert isinstance(exc, APIError)
    assert isinstance(exc, TimeoutError)
    assert exc.phase == phase
    assert cls.phase == phase
    assert exc.timeout == 2.5
    assert str(exc) == "too slow (provider=P, model=m)"
    with pytest.raises(TimeoutError):
        raise exc


@pytest.mark.parametrize("cls", [ConfigurationError, InvalidRequestError])
def test_value_errors(cls: type[AsyncProvError]) -> None:
    """ConfigurationError and InvalidRequestError can be caught as ValueError."""
    assert issubclass(cls, ValueError)
    with pytest.raises(ValueError, match=r"^nope$"):
        raise cls("nope")
