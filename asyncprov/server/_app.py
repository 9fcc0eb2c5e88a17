"""The OpenAI-compatible gateway: an aiohttp.web application over an ``AsyncClient``."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .. import (
    CALL_SETTINGS,
    AsyncClient,
    AsyncProvError,
    ChatCompletion,
    HTTPStatusError,
    InvalidRequestError,
    KeyMask,
)
from ..providers import Provider
from ._config import DEFAULT_MAX_BODY_SIZE, Route
from ._metrics import NOT_RECORDED, GatewayMetrics
from ._metrics import RECORD_KEY as _RECORD_KEY
from ._wire import SAYS, body_problem, closing, error_event, error_response, event, status_for

__all__ = ["DEFAULT_MAX_BODY_SIZE", "create_app"]

log = logging.getLogger("asyncprov.server")

_SHUTTING_DOWN = "the gateway is shutting down"

_CLIENT_KEY: web.AppKey[AsyncClient] = web.AppKey("client", AsyncClient)
_REQUEST_ID_KEY: web.RequestKey[str] = web.RequestKey("request_id", str)
_PRIVATE_FIELDS = {"provider"}
"""Fields of a completion or chunk a client never sees: which upstream answered."""
_GATEWAY_KEY: web.AppKey[_Gateway] = web.AppKey("gateway")


def _upstream_keys(provider: Provider | None) -> list[str | None]:
    """Every key ``provider`` (or its failover members) would send upstream."""
    if provider is None:
        return []
    members: list[Provider] = list(getattr(provider, "providers", ())) or [provider]
    keys = []
    for member in members:
        with contextlib.suppress(AsyncProvError):
            keys.append(member.get_api_key())
    return keys


class _Gateway:
    def __init__(
        self,
        client: AsyncClient,
        models: Iterable[str],
        api_keys: Iterable[str],
        routes: Mapping[str, Route] | None,
        grace_period: float,
    ) -> None:
        self.routes = dict(routes) if routes is not None else None
        self.models = list(models) or list(self.routes or ())
        self.api_keys = [key.encode() for key in api_keys]
        self.grace_period = grace_period
        self.max_body_size = DEFAULT_MAX_BODY_SIZE
        self.body_timeout = 60.0
        self.draining = False
        self.inflight: dict[anyio.CancelScope, _Answer] = {}
        self.idle: anyio.Event | None = None  # made by drain(), inside the loop
        self.hurry: anyio.Event | None = None
        # Upstream keys never reach a client or a log line, even when an upstream echoes
        # one back in an error message.
        providers = [client.provider, *(r.provider for r in (self.routes or {}).values())]
        names: set[str] = set()
        for provider in providers:
            for member in [provider, *getattr(provider, "providers", ())]:
                if member is not None and member.name != "RetryProvider":
                    names.add(member.name)
        self.provider_names = sorted(names, key=len, reverse=True)
        keys = [k for p in providers for k in _upstream_keys(p)]
        self.scrub = KeyMask([*keys, client.api_key])  # the client's own key, for any provider
        self.metrics: GatewayMetrics | None = None

    def hide_names(self, text: str) -> str:
        """``text`` with every configured provider name replaced: internal names (which
        often say where an upstream runs) never reach a client."""
        for name in self.provider_names:
            text = text.replace(name, "the model's provider")
        return text

    def authorized(self, request: web.Request, keys: list[bytes] | None = None) -> bool:
        keys = self.api_keys if keys is None else keys
        if not keys:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":  # auth scheme names are case-insensitive
            return False
        given = token.strip().encode("utf-8", "surrogateescape")
        # Compare against every key, in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(given, key) for key in keys]
        return any(matches)

    def failure(
        self, error: AsyncProvError, *, request_id: str, model: object
    ) -> tuple[int, str, str]:
        """The status, OpenAI error type and message a client gets for ``error``: the
        public model name, the kind of failure and the request id, never the upstream's
        text, address or provider name. The details go to the log under the request id."""
        status, kind = status_for(error), error.code
        if isinstance(error, InvalidRequestError):  # the client's own request: say why
            message = self.hide_names(str(error))
        elif isinstance(error, HTTPStatusError) and status in (401, 403):
            # The upstream refused the gateway's own credentials: the client's key is
            # fine, so it must not look like a 401 to it.
            status, kind = 502, "upstream_error"
            message = "an upstream provider refused the gateway's credentials"
        else:
            message = SAYS.get(kind, "the upstream provider failed")
        log.warning(
            "request %s (model %s) failed: %s: %s",
            request_id,
            model,
            type(error).__name__,
            self.scrub(str(error) + "".join("\n" + n for n in getattr(error, "__notes__", ()))),
        )
        return status, kind, f"{message} (model {model!r}, request {request_id})"

    async def health(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "shutting down"}, status=503)
        return web.json_response({"status": "ok"})

    async def list_models(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return error_response(401, "invalid or missing API key", "authentication_error")
        now = int(time.time())
        data = [
            {"id": m, "object": "model", "created": now, "owned_by": "asyncprov"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request):
            return error_response(401, "invalid or missing API key", "authentication_error")
        if self.draining:
            return error_response(503, _SHUTTING_DOWN, "server_error")
        # Registered before the first await, so a shutdown sees every started request.
        answer = _Answer(self, request)
        scope = anyio.CancelScope()
        self.inflight[scope] = answer
        try:
            with scope:
                return await answer.run()
            # Cancelled by a shutdown: its grace period ran out, or the body never came.
            return await answer.cut_off()
        except Exception as error:  # a bug, not an expected failure: no internals shown
            log.error(
                "request %s: unexpected %s while answering",
                answer.request_id,
                type(error).__name__,
                exc_info=True,
            )
            return error_response(500, "the gateway failed unexpectedly", "server_error")
        finally:
            del self.inflight[scope]
            if not self.inflight and self.idle is not None:
                self.idle.set()

    async def drain(self, app: web.Application) -> None:
        """At shutdown: refuse new requests, let in-flight ones finish for up to the grace
        period, then end the rest (streams get an error event, never a fake [DONE])."""
        if self.draining:  # already draining (a second shutdown)
            return
        self.draining = True
        self.idle = idle = anyio.Event()
        self.hurry = self.hurry or anyio.Event()
        # Bodies still arriving never complete: the server stops reading at shutdown.
        for scope, answer in list(self.inflight.items()):
            if answer.reading:
                scope.cancel()
        if not self.inflight:
            return
        log.info("waiting up to %s s for %d requests", self.grace_period, len(self.inflight))
        async with anyio.create_task_group() as tg:

            async def hurried() -> None:
                assert self.hurry is not None
                await self.hurry.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(hurried)
            with anyio.move_on_after(self.grace_period):
                await idle.wait()
            tg.cancel_scope.cancel()
        if self.inflight:
            log.warning("ending %d requests still in flight", len(self.inflight))
            for scope in list(self.inflight):
                scope.cancel()
            with anyio.move_on_after(5):
                await idle.wait()

    def stop_now(self) -> None:
        """End the grace period now (a second Ctrl-C)."""
        if self.hurry is None:
            self.hurry = anyio.Event()
        self.hurry.set()


class _Answer:
    """One chat request's reply, as far as it has got."""

    def __init__(self, gateway: _Gateway, request: web.Request) -> None:
        self.gateway = gateway
        self.request = request
        self.reading = True
        self.done = False
        self.response: web.StreamResponse | None = None
        self.request_id: str = request.get(_REQUEST_ID_KEY) or "req_" + uuid.uuid4().hex[:24]
        """Sent to the client (``X-Request-Id``, and in error messages) and logged with
        a failure's details."""

    async def run(self) -> web.StreamResponse:
        gateway = self.gateway
        length = self.request.content_length
        if length is not None and length > gateway.max_body_size:  # refused before reading
            return closing(
                error_response(413, "the request body is too large", "invalid_request_error")
            )
        try:
            with anyio.fail_after(gateway.body_timeout):
                raw = await self.request.read()
        except web.HTTPRequestEntityTooLarge:
            return closing(
                error_response(413, "the request body is too large", "invalid_request_error")
            )
        except TimeoutError:
            message = f"the request body did not arrive within {gateway.body_timeout} s"
            return closing(error_response(408, message, "invalid_request_error"))
        self.reading = False
        try:
            body = json.loads(raw, parse_constant=_not_json)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
            return error_response(
                400, "the request body is not valid JSON", "invalid_request_error"
            )
        if not isinstance(body, dict):
            return error_response(
                400, "the request body must be a JSON object", "invalid_request_error"
            )
        problem = body_problem(body)
        if problem is not None:
            param, message = problem
            return error_response(
                400, message, "invalid_request_error", "invalid_type", param=param
            )
        options: dict[str, Any] = {
            key: value
            for key, value in body.items()
            if key not in CALL_SETTINGS and key not in ("model", "messages", "stream")
        }
        model = body.get("model")
        routes = self.gateway.routes
        record = self.request.get(_RECORD_KEY, NOT_RECORDED)
        record.asked(model, routes)
        if routes is not None:
            route = routes.get(model) if isinstance(model, str) else None
            if route is None:
                message = f"the model {model!r} does not exist; GET /v1/models lists them"
                return error_response(404, message, "invalid_request_error", "model_not_found")
            options["provider"] = route.provider
            model = route.model
        stream = bool(body.get("stream"))
        client = self.request.app[_CLIENT_KEY]
        public = body.get("model")
        try:
            result = await client.chat.completions.create(
                model=model, messages=body.get("messages"), stream=stream, **options
            )
        except AsyncProvError as error:
            status, kind, message = self.gateway.failure(
                error, request_id=self.request_id, model=public
            )
            record.failed(error, kind)
            refused = error_response(status, message, kind)
            refused.headers["X-Request-Id"] = self.request_id
            return refused
        record.answered(result)
        if isinstance(result, ChatCompletion):
            result.__dict__["model"] = public if isinstance(public, str) else result.model
            return web.Response(
                body=result.model_dump_json(exclude_none=True, exclude=_PRIVATE_FIELDS),
                content_type="application/json",
                headers={"X-Request-Id": self.request_id},
            )
        response = self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Request-Id": self.request_id,
            }
        )
        # A client disconnect cancels this handler (or fails a write); leaving
        # `async with` then closes the upstream connection at once.
        async with result:
            try:
                await response.prepare(self.request)
                record.stream_started(time.monotonic())
                async for chunk in result:
                    if isinstance(public, str):
                        chunk.__dict__["model"] = public
                    data = chunk.model_dump_json(exclude_none=True, exclude=_PRIVATE_FIELDS)
                    await response.write(event(data))
            except AsyncProvError as error:
                # Never a fake [DONE]: the client must see that the stream broke off.
                status, kind, message = self.gateway.failure(
                    error, request_id=self.request_id, model=public
                )
                record.failed(error, kind, answered=True)
                with contextlib.suppress(ConnectionError):
                    await response.write(error_event(message, kind, status))
                return response
            except ConnectionError:  # the client went away mid-write
                log.info("client disconnected mid-stream")
                return response
        self.done = True
        with contextlib.suppress(ConnectionError):
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        return response

    async def cut_off(self) -> web.StreamResponse:
        if self.response is None or not self.response.prepared:
            return error_response(503, _SHUTTING_DOWN, "server_error")
        if self.done:  # the stream was complete; only its last write was cut
            return self.response
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client may be gone
            await self.response.write(error_event(_SHUTTING_DOWN, "server_error", 503))
        return self.response


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every response carries ``X-Request-Id``; unknown paths and methods answer in
    OpenAI's error JSON too."""
    request_id = request[_REQUEST_ID_KEY] = "req_" + uuid.uuid4().hex[:24]
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = error_response(error.status, error.reason, "invalid_request_error")
        if "Allow" in error.headers:  # 405 says which methods are
            response.headers["Allow"] = error.headers["Allow"]
    if not response.prepared:
        response.headers.setdefault("X-Request-Id", request_id)
    return response


async def drain(app: web.Application) -> None:
    """Drain the gateway while it still listens: from now on ``/healthz`` and new chat
    requests answer 503 (on new and open connections alike), and in-flight requests
    get the grace period. Then stop the server (``runner.cleanup()``)."""
    await app[_GATEWAY_KEY].drain(app)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity, which json.loads allows


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` only once the request could be answered: a wrong key or
    an announced body over the limit is refused before the client sends its body."""
    gateway = request.app[_GATEWAY_KEY]
    if request.headers.get("Expect", "").lower() != "100-continue":
        return closing(error_response(417, "unsupported Expect header", "invalid_request_error"))
    if not gateway.authorized(request):
        return closing(error_response(401, "invalid or missing API key", "authentication_error"))
    length = request.content_length
    if length is not None and length > gateway.max_body_size:
        return closing(
            error_response(413, "the request body is too large", "invalid_request_error")
        )
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


def stop_now(app: web.Application) -> None:
    """Cut a graceful shutdown short: in-flight requests end now (a second signal)."""
    app[_GATEWAY_KEY].stop_now()


def create_app(
    client: AsyncClient,
    *,
    routes: Mapping[str, Route] | None = None,
    models: Iterable[str] = (),
    api_keys: Iterable[str] = (),
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    grace_period: float = 10.0,
    body_timeout: float = 60.0,
    metrics: bool = False,
    metrics_keys: Iterable[str] | None = None,
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
        body_timeout: seconds a request may take to send its body (408 past it).
        metrics: serve Prometheus metrics at ``GET /metrics`` (needs
            ``asyncprov[prometheus]``).
        metrics_keys: bearer keys a scraper must present (default: ``api_keys``;
            none: open).

    Example:
        >>> app = create_app(AsyncClient(base_url="http://127.0.0.1:11434/v1"))
        >>> web.run_app(app, host="127.0.0.1", port=8000)
    """
    gateway = _Gateway(client, models, api_keys, routes, grace_period)
    gateway.max_body_size = max_body_size
    gateway.body_timeout = body_timeout
    middlewares: list[Middleware] = [_json_errors]
    if metrics:
        gateway.metrics = GatewayMetrics(client, gateway.provider_names, routed=routes is not None)
        middlewares.append(gateway.metrics.middleware)
    app = web.Application(client_max_size=max_body_size, middlewares=middlewares)
    app[_CLIENT_KEY] = client
    app[_GATEWAY_KEY] = gateway
    app.router.add_post("/v1/chat/completions", gateway.chat, expect_handler=_expect)
    app.router.add_get("/v1/models", gateway.list_models)
    app.router.add_get("/healthz", gateway.health)
    if gateway.metrics is not None:
        keys = gateway.api_keys if metrics_keys is None else [k.encode() for k in metrics_keys]
        app.router.add_get("/metrics", gateway.metrics.handler(gateway.authorized, keys))
    app.on_shutdown.append(gateway.drain)
    return app
