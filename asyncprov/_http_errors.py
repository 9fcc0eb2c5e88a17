"""How aiohttp and socket failures become asyncprov errors: the one translation point
of the HTTP edge, which also strips credentials from the errors it keeps as causes."""

from __future__ import annotations

from contextlib import suppress

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, ValidationError

from ._errors import (
    APIConnectionError,
    AsyncProvError,
    ConfigurationError,
    ConnectTimeoutError,
    ProxyError,
)

__all__ = [
    "SECRET_HEADERS",
    "error_fields",
    "is_truncated_json",
    "proxy_auth_error",
    "scrub",
    "translate",
]


SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}
)
"""Request headers that carry credentials (lower-cased)."""


def scrub(error: BaseException) -> None:
    """Drop credentials from the request headers an aiohttp error keeps, since the
    error stays reachable as ``__cause__`` (and error trackers print its repr)."""
    info = getattr(error, "request_info", None)
    if info is None or not hasattr(info, "_replace"):
        return
    kept = {k: v for k, v in info.headers.items() if k.lower() not in SECRET_HEADERS}
    with suppress(AttributeError, TypeError):
        error.request_info = info._replace(  # type: ignore[attr-defined]
            headers=CIMultiDictProxy(CIMultiDict(kept))
        )


def proxy_auth_error(provider: str | None, model: str | None) -> ProxyError:
    """The error for a proxy answering 407: its credentials were refused."""
    return ProxyError(
        "the proxy refused the credentials (HTTP 407): check the user and password "
        "in the proxy URL",
        provider=provider,
        model=model,
        status=407,
    )


def translate(
    error: Exception, provider: str | None, model: str | None, *, proxy: bool
) -> AsyncProvError | None:
    """The asyncprov error for an aiohttp or socket failure (``None``: not ours to map)."""
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return ProxyError("could not connect to the proxy", provider=provider, model=model)
    if isinstance(error, aiohttp.ClientHttpProxyError):
        if error.status == 407:
            return proxy_auth_error(provider, model)
        return ProxyError(
            f"the proxy refused the request with status {error.status}",
            provider=provider,
            model=model,
            status=error.status,
        )
    if isinstance(error, aiohttp.ConnectionTimeoutError | aiohttp.ServerTimeoutError):
        suffix = " through the proxy" if proxy else ""
        return ConnectTimeoutError("timed out connecting" + suffix, provider=provider, model=model)
    if isinstance(error, aiohttp.InvalidURL | UnicodeError):
        return ConfigurationError(f"the URL is not valid: {type(error).__name__}")
    if isinstance(error, aiohttp.ClientConnectorError):
        reason = error.os_error.strerror or error.os_error
        message = f"could not connect to {error.host}:{error.port}: {reason}"
        return APIConnectionError(message, provider=provider, model=model)
    if isinstance(error, aiohttp.ClientPayloadError):
        return APIConnectionError("the response body was cut short", provider=provider, model=model)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ConnectionError):
        return APIConnectionError(
            "the connection was closed by the server", provider=provider, model=model
        )
    if isinstance(error, aiohttp.ClientError):
        return APIConnectionError(
            f"HTTP error: {type(error).__name__}", provider=provider, model=model
        )
    if isinstance(error, RuntimeError) and "closed" in str(error).lower():
        # aiohttp's reader when its connection was closed under it (e.g. client closed)
        return APIConnectionError(
            "the connection was closed while reading", provider=provider, model=model
        )
    return None


class _ErrorObject(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, defer_build=True)

    message: str | None = None
    detail: str | None = None
    type: str | None = None
    code: str | None = None


class _ErrorBody(_ErrorObject):
    """``{"error": {...}}`` (OpenAI, Anthropic, Gemini), ``{"error": "text"}``, or the
    fields at the top level."""

    error: _ErrorObject | str | None = None


def error_fields(body: bytes, *, snippet: bool = True) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an error body, else (with ``snippet``) the start of a
    body that is not JSON as the message; JSON that is no error object gives Nones."""
    try:
        parsed = _ErrorBody.model_validate_json(body) if body else None
    except ValidationError as exc:
        if snippet and any(e["type"] == "json_invalid" for e in exc.errors()):
            text = body.decode("utf-8", "replace").strip()
            return (text[:200] or None), None, None
        return None, None, None
    if parsed is None:
        return None, None, None
    error = parsed.error if parsed.error is not None else parsed
    if isinstance(error, str):
        return error, None, None
    return error.message or error.detail, error.type, error.code


def is_truncated_json(exc: ValidationError) -> bool:
    """Whether validating a body failed because its JSON ends early (a body cut short
    on a connection that marks its end only by closing)."""
    return any(
        e["type"] == "json_invalid" and "EOF while parsing" in str(e.get("ctx", {}).get("error"))
        for e in exc.errors(include_url=False)
    )
