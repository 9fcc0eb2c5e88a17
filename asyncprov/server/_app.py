"""The OpenAI-compatible gateway: an aiohttp.web application over an ``AsyncClient``."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
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
from ._config import DEFAULT_MAX_BODY_SIZE, Route

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]

log = logging.getLogger("asyncprov.server")

_SHUTTING_DOWN = "the gateway is shutting down"

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


def _error_event(message: str, kind: str, status: int) -> bytes:
    return _event(json.dumps({"error": {"message": message, "type": kind, "code": status}}))


class _Gateway:
    def __init__(
        self,
        models: Iterable[str],
        api_keys: Iterable[str],
        routes: Mapping[str, Route] | None,
        grace_period: float,
    ) -> None:
        self.routes = dict(routes) if routes is not None else None
        self.models = list(models) or list(self.routes or ())
        self.api_keys = [key.encode() for key in api_keys]
        self.grace_period = grace_period
        self.draining = False
        self.inflight: set[anyio.CancelScope] = set()
        self.idle: anyio.Event | None = None  # made by drain(), inside the loop

    def _authorized(self, request: web.Request) -> bool:
        if not self.api_keys:
            return True
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        # Compare against every key, in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(given, key) for key in self.api_keys]
        return any(matches)

    async def health(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "shutting down"}, status=503)
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
        if self.draining:
            return _error(503, _SHUTTING_DOWN, "server_error")
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
        model = body.get("model")
        if self.routes is not None:
            route = self.routes.get(model) if isinstance(model, str) else None
            if route is None:
                message = f"the model {model!r} does not exist; GET /v1/models lists them"
                return _error(404, message, "invalid_request_error", "model_not_found")
            options["provider"] = route.provider
            model = route.model
        state = _Answer(request, stream=bool(body.get("stream")))
        scope = anyio.CancelScope()
        self.inflight.add(scope)
        try:
            with scope:
                return await state.run(
                    request.app[_CLIENT_KEY], model, body.get("messages"), options
                )
            # Cancelled by a shutdown whose grace period ran out.
            return await state.cut_off()
        finally:
            self.inflight.discard(scope)
            if not self.inflight and self.idle is not None:
                self.idle.set()

    async def drain(self, app: web.Application) -> None:
        """At shutdown: refuse new requests, let in-flight ones finish for up to the grace
        period, then end the rest (streams get an error event, never a fake [DONE])."""
        self.draining = True
        if not self.inflight:
            return
        log.info("waiting up to %s s for %d requests", self.grace_period, len(self.inflight))
        idle = self.idle = anyio.Event()
        with anyio.move_on_after(self.grace_period):
            await idle.wait()
        if self.inflight:
            log.warning("grace period over: ending %d requests", len(self.inflight))
            for scope in list(self.inflight):
                scope.cancel()
            with anyio.move_on_after(5):
                await idle.wait()


class _Answer:
    """One chat request's reply, as far as it has got."""

    def __init__(self, request: web.Request, *, stream: bool) -> None:
        self.request = request
        self.stream = stream
        self.response: web.StreamResponse | None = None

    async def run(
        self, client: AsyncClient, model: Any, messages: Any, options: dict[str, Any]
    ) -> web.StreamResponse:
        try:
            result = await client.chat.completions.create(
                model=model, messages=messages, stream=self.stream, **options
            )
        except AsyncProvError as error:
            status, kind = _status_for(error)
            log.info("request failed before streaming: %s", type(error).__name__)
            return _error(status, str(error), kind)
        if isinstance(result, ChatCompletion):
            return web.Response(
                body=result.model_dump_json(exclude_none=True), content_type="application/json"
            )
        response = self.response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(self.request)
        # A client disconnect cancels this handler; leaving `async with` then closes the
        # upstream connection at once.
        async with result:
            try:
                async for chunk in result:
                    await response.write(_event(chunk.model_dump_json(exclude_none=True)))
            except AsyncProvError as error:
                # Never a fake [DONE]: the client must see that the stream broke off.
                status, kind = _status_for(error)
                await response.write(_error_event(str(error), kind, status))
                return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def cut_off(self) -> web.StreamResponse:
        if self.response is None:
            return _error(503, _SHUTTING_DOWN, "server_error")
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client may be gone
            await self.response.write(_error_event(_SHUTTING_DOWN, "server_error", 503))
        return self.response


def create_app(
    client: AsyncClient,
    *,
    routes: Mapping[str, Route] | None = None,
    models: Iterable[str] = (),
    api_keys: Iterable[str] = (),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    grace_period: float = 10.0,
) -> web.Application:
    """An OpenAI-compatible HTTP application answering through ``client``.

    Args:
        client: the ``AsyncClient`` (its provider, failover and timeouts) that answers.
        routes: public model name -> ``Route`` (the provider or failover group, and the
            model to ask it for); other models get 404. Without routes, every request
            goes to ``client`` as it is.
        models: model names listed by ``GET /v1/models`` (default: the routes').
        api_keys: bearer keys clients must present (none: open to whoever can reach it).
        max_body_size: the largest request body, in bytes (413 above it).
        grace_period: at shutdown, seconds in-flight requests may take to finish
            before they are ended.

    Example:
        >>> app = create_app(AsyncClient(base_url="http://127.0.0.1:11434/v1"))
        >>> web.run_app(app, host="127.0.0.1", port=8000)
    """
    gateway = _Gateway(models, api_keys, routes, grace_period)
    app = web.Application(client_max_size=max_body_size)
    app[_CLIENT_KEY] = client
    app.router.add_post("/v1/chat/completions", gateway.chat)
    app.router.add_get("/v1/models", gateway.list_models)
    app.router.add_get("/healthz", gateway.health)
    app.on_shutdown.append(gateway.drain)
    return app
