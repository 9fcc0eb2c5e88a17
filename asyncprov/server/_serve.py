"""Running the gateway: ``asyncprov serve`` and ``serve()`` for embedding it."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
from collections.abc import Callable

import anyio
from aiohttp import web

from .. import AsyncClient, ConfigurationError, SharedState
from ._app import create_app, drain, stop_now
from ._config import GatewayConfig, build_routes
from ._connections import ConnectionLimits, GatewaySite
from ._metrics import metrics_available

__all__ = ["serve"]

log = logging.getLogger("asyncprov.server")

LINGERING_TIME = 2.0
"""Seconds spent reading an unread request body after answering it, before closing."""


async def serve(
    config: GatewayConfig,
    *,
    ready: Callable[[str], None] | None = None,
    stop: anyio.Event | None = None,
    handle_signals: bool = True,
    shared_state: SharedState | str | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the gateway described by ``config`` until SIGINT/SIGTERM (or ``stop`` is set),
    then shut down gracefully: no new requests, in-flight ones get the grace period.

    Args:
        config: a checked configuration (``load_config`` or ``parse_config``).
        ready: called with the API root URL once listening (the port is real when
            ``config.server.port`` is 0).
        stop: set it to shut down (in addition to the signals).
        handle_signals: shut down on SIGINT and SIGTERM (main thread only).
        shared_state: share the providers' limits and health through this Redis
            (default: ``config.shared_state``'s, if any), e.g. with other workers.
        sock: a listening socket to serve instead of binding ``server.host`` and
            ``server.port`` (``serve_workers`` gives each worker the same one).

    Raises:
        ConfigurationError: the configuration cannot be acted on (a missing key
            variable, an unknown provider in a route, a port in use); the message
            names the field.
    """
    routes, fallback = build_routes(config)
    settings = config.server
    keys = settings.keys()
    if not keys and not _is_loopback(settings.host):
        log.warning(
            "listening on %s with no client keys: anyone who can reach it may use it", settings.host
        )
    stop = stop or anyio.Event()
    if shared_state is None and config.shared_state is not None:
        shared_state = config.shared_state.shared_state()
    async with AsyncClient(
        fallback,
        timeout=config.timeouts,
        max_event_size=settings.max_event_size,
        rate_limits=config.rate_limits() or None,
        shared_state=shared_state,
    ) as client:
        app = create_app(
            client,
            routes=routes,
            api_keys=keys,
            max_body_size=settings.max_body_size,
            grace_period=settings.grace_period,
            body_timeout=settings.body_timeout,
            metrics=metrics_available() if settings.metrics is None else settings.metrics,
            metrics_keys=settings.scrape_keys(),
        )
        # handler_cancellation: a client that disconnects cancels its upstream call.
        # keepalive_timeout: aiohttp closes a connection idle (or still sending its
        # headers) that long, from its start and after each response.
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            shutdown_timeout=5,
            keepalive_timeout=settings.idle_timeout,
            # After answering a request whose body it did not read (413, 408), aiohttp
            # reads the rest before closing so the client sees the answer: briefly.
            lingering_time=LINGERING_TIME,
            access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        )
        await runner.setup()
        try:
            limits = ConnectionLimits(
                idle_timeout=settings.idle_timeout,
                body_timeout=settings.body_timeout,
                send_timeout=settings.send_timeout,
                max_connections=settings.max_connections,
            )
            site = GatewaySite(runner, settings.host, settings.port, limits=limits, sock=sock)
            try:
                await site.start()
            except OSError as error:
                raise ConfigurationError(
                    f"server.host/server.port: cannot listen on {settings.host}:"
                    f"{settings.port}: {error.strerror or error}"
                ) from None
            host, port = runner.addresses[0][:2]
            url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/v1"
            served = ", ".join(routes) if routes is not None else "any (passed through)"
            log.info("listening on %s; models: %s", url, served)
            if ready is not None:
                ready(url)
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(_on_signals, stop, app, sock is not None)
                await stop.wait()
                # Still listening while draining, so health checks and new requests get
                # their 503 instead of a refused connection; then stop the server.
                await drain(app)
                await runner.cleanup()
                tg.cancel_scope.cancel()
        finally:
            if runner.server is not None:  # not cleaned up yet (an error on the way)
                await runner.cleanup()
        log.info("stopped")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _on_signals(stop: anyio.Event, app: web.Application, worker: bool) -> None:
    """The first SIGINT/SIGTERM starts a graceful shutdown; a second one ends the
    grace period at once (in-flight streams get their error event). A worker of
    ``serve --workers`` takes a second SIGTERM as the same stop: a group's SIGTERM
    (systemd's, ``kill -TERM -PGID``) reaches it both directly and from its parent, which
    turns a second SIGTERM of its own into SIGINT."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set():
                log.info("%s: shutting down (again to stop now)", name)
                stop.set()
            elif worker and signum == signal.SIGTERM:
                log.debug("SIGTERM again: the same stop (draining goes on)")
            else:
                log.warning("%s again: ending in-flight requests now", name)
                stop_now(app)
