"""The OpenAI-compatible gateway: an aiohttp.web application over an ``AsyncClient``."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .. import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    AsyncProvError,
    ChatCompletion,
    ConfigurationError,
    HTTPStatusError,
    InvalidRequestError,
    ModelNotFoundError,
    ProviderNotFoundError,
    RetryProviderError,
    StreamInterruptedError,
)

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]

log = logging.getLogger("asyncprov.server")

DEFAULT_MAX_BODY_SIZE = 8 * 1024 * 1024
"""The largest request body accepted (413 above it): room for a few inline images."""

_CLIENT_KEY: web.AppKey[AsyncClient] = web.AppKey("client", AsyncClient)
# `create()` keywords that configure the gateway's own call (where it connects, with which
# key, how long it waits). A remote client must never set them; every other body field
# is OpenAI's and goes upstream as it is.
CALLER_ONLY = frozenset(
    {"provider", "image", "images", "proxy", "api_key", "timeout", "hedge_delay"}
)


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _status_for(error: AsyncProvError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type a gateway answers for ``error``."""
    if isinstance(error, HTTPStatusError):
        return error.status, error.error_type or "upstream_error"
    if isinstance(error, InvalidRequestError):
        return 400, "invalid_request_error"
    if isinstance(error, ModelNotFoundError | ProviderNotFoundError):
        return 404, "not_found_error"
    if isinstance(error, APITimeoutError):
        return 504, "timeout_error"
    if isinstance(error, APIConnectionError | RetryProviderError | StreamInterruptedError):
        return 502, "upstream_error"
    if isinstance(error, ConfigurationError):
        return 500, "configuration_error"
    return 502, "upstream_error"


def _event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


class _Gateway:
    def __init__(self, models: Iterable[str], api_keys: Iterable[str]) -> None:
        self.models = list(models)
        self.api_keys = [key.encode() for key in api_keys]

    def _authorized(self, request: web.Request) -> bool:
        if not self.api_keys:
            return True
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        # Compare against every key, in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(given, key) for key in self.api_keys]
        return any(matches)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def list_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "invalid or missing API key", "authentication_error")
        now = int(time.time())
        data = [
            {"id": m, "object": "model", "created": now, "owned_by": "asyncprov"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "invalid or missing API key", "authentication_error")
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "the request body is too large", "invalid_request_error")
        except ValueError:
            return _error(400, "the request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object", "invalid_request_error")
        options: dict[str, Any] = {
            key: value
            for key, value in body.items()
            if key not in CALLER_ONLY and key not in ("model", "messages", "stream")
        }
        stream = bool(body.get("stream"))
        client = request.app[_CLIENT_KEY]
        try:
            result = await client.chat.completions.create(
                model=body.get("model"), messages=body.get("messages"), stream=stream, **options
            )
        except AsyncProvError as error:
            status, kind = _status_for(error)
            log.info("request failed before streaming: %s", type(error).__name__)
            return _error(status, str(error), kind)
        if isinstance(result, ChatCompletion):
            return web.Response(
                body=result.model_dump_json(exclude_none=True), content_type="application/json"
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # A client disconnect cancels this handler; leaving `async with` then closes the
        # upstream connection at once.
        async with result:
            try:
                async for chunk in result:
                    await response.write(_event(chunk.model_dump_json(exclude_none=True)))
            except AsyncProvError as error:
                # Never a fake [DONE]: the client must see that the stream broke off.
                status, kind = _status_for(error)
                payload = {"error": {"message": str(error), "type": kind, "code": status}}
                await response.write(_event(json.dumps(payload)))
                return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def create_app(
    client: AsyncClient,
    *,
    models: Iterable[str] = (),
    api_keys: Iterable[str] = (),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
) -> web.Application:
    """An OpenAI-compatible HTTP application answering through ``client``.

    Args:
        client: the ``AsyncClient`` (its provider, failover and timeouts) that answers.
        models: model names listed by ``GET /v1/models``.
        api_keys: bearer keys clients must present (none: open to whoever can reach it).
        max_body_size: the largest request body, in bytes (413 above it).
    """
    gateway = _Gateway(models, api_keys)
    app = web.Application(client_max_size=max_body_size)
    app[_CLIENT_KEY] = client
    app.router.add_post("/v1/chat/completions", gateway.chat)
    app.router.add_get("/v1/models", gateway.list_models)
    app.router.add_get("/healthz", gateway.health)
    return app
