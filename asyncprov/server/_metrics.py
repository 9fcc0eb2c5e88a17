"""The gateway's Prometheus metrics (``GET /metrics``), kept with ``prometheus-client``
(the ``asyncprov[prometheus]`` extra), which is imported only when metrics are on.

Every label value is bounded: the route is one the gateway serves, the model a
configured one (a pass-through gateway keeps the first ``MAX_MODELS`` names it sees and
counts the rest as ``other``), the provider a configured name, the status a number and
the kind one of the gateway's error words. Nothing a client sends becomes a label as
it is. Provider health and rate-limit queues are read when scraped, not kept up to date.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import AsyncClient, AsyncProvError, ConfigurationError
from ._wire import error_response

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = [
    "MAX_MODELS",
    "NOT_RECORDED",
    "RECORD_KEY",
    "GatewayMetrics",
    "RequestRecord",
    "metrics_available",
]

MAX_MODELS = 100
"""Distinct model labels a pass-through gateway keeps (later ones count as ``other``)."""

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_REFUSALS = {401: "authentication_error", 408: "request_timeout", 413: "request_too_large"}


def metrics_available() -> bool:
    """Whether ``prometheus-client`` is installed (found, not imported)."""
    return importlib.util.find_spec("prometheus_client") is not None


class _ProviderState:
    """A collector reading, at each scrape, whether each provider cools down and how
    many requests wait in its rate limiter's queue."""

    def __init__(self, client: AsyncClient, providers: Sequence[str]) -> None:
        self.client = client
        self.providers = sorted(name for name in providers if name)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        cooling = GaugeMetricFamily(
            "asyncprov_gateway_provider_cooling",
            "1 while the provider cools down after failures (failover passes it over).",
            labels=["provider"],
        )
        queued = GaugeMetricFamily(
            "asyncprov_gateway_rate_limit_queue_depth",
            "Requests waiting for their turn under the provider's rate limits.",
            labels=["provider"],
        )
        health = self.client.health
        limits = self.client.rate_limits
        for name in self.providers:
            cooling.add_metric([name], 0.0 if health.cooling_until(name) is None else 1.0)
            queued.add_metric([name], float(limits.stats(name).waiting))
        yield cooling
        yield queued

    def describe(self) -> Iterable[Metric]:
        return ()


class GatewayMetrics:
    """The gateway's counters, gauges and histograms, in a registry of their own."""

    def __init__(self, client: AsyncClient, providers: Sequence[str], *, routed: bool) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError:
            raise ConfigurationError(
                "server.metrics: /metrics needs prometheus-client; "
                "pip install 'asyncprov[prometheus]'"
            ) from None
        self.routed = routed
        self._models: set[str] = set()
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "asyncprov_gateway_requests",
            "Requests answered, by route, public model, answering provider and status.",
            ["route", "model", "provider", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "asyncprov_gateway_errors",
            "Requests refused or failed, and streams broken off, by kind of failure.",
            ["kind"],
            registry=registry,
        )
        self.attempts = Counter(
            "asyncprov_gateway_upstream_attempts",
            "Attempts on upstream providers, by provider and outcome (ok, an error "
            "class, or Cancelled for a hedge that lost).",
            ["provider", "outcome"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "asyncprov_gateway_in_flight_requests",
            "Requests being answered now.",
            registry=registry,
        )
        self.streams = Gauge(
            "asyncprov_gateway_in_flight_streams",
            "Streamed answers being sent now.",
            registry=registry,
        )
        self.duration = Histogram(
            "asyncprov_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer's end (a stream's last event).",
            ["route", "model", "provider"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.first_token = Histogram(
            "asyncprov_gateway_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first content.",
            ["model", "provider"],
            buckets=_SECONDS,
            registry=registry,
        )
        registry.register(_ProviderState(client, providers))

    def model_label(self, model: object, *, known: bool) -> str:
        """The label for a requested model: a route's name, or (pass-through) the name
        as asked while fewer than ``MAX_MODELS`` were seen."""
        if not isinstance(model, str) or not model:
            return "none"
        if self.routed:
            return model if known else "unknown"
        if model in self._models:
            return model
        if len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"

    def handler(
        self, authorized: Callable[[web.Request, list[bytes]], bool], keys: list[bytes]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``GET /metrics``: the metrics in Prometheus' text format, for a scraper
        presenting one of ``keys`` (any caller when there are none)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def page(request: web.Request) -> web.Response:
            if not authorized(request, keys):
                return error_response(401, "invalid or missing API key", "authentication_error")
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        return page

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts every request but the scrapes themselves."""
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "other"
        if route == "/metrics":
            return await handler(request)
        record = request[RECORD_KEY] = RequestRecord(self)
        started = time.monotonic()
        status = 500
        self.in_flight.inc()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client closed the connection first (nginx's number)
            record.kind = "client_closed_request"
            self.errors.labels(record.kind).inc()
            raise
        finally:
            self.in_flight.dec()
            if record.streaming:
                self.streams.dec()
            if status >= 400:
                record.refused(status)
            labels = (route, record.model, record.provider)
            self.requests.labels(*labels, str(status)).inc()
            self.duration.labels(*labels).observe(time.monotonic() - started)
            if record.first_at is not None:
                self.first_token.labels(record.model, record.provider).observe(
                    record.first_at - started
                )


class RequestRecord:
    """What one request's metrics need, filled in as it is answered."""

    __slots__ = ("first_at", "kind", "metrics", "model", "provider", "streaming")

    def __init__(self, metrics: GatewayMetrics | None) -> None:
        self.metrics = metrics  # None: metrics are off, and every method does nothing
        self.model = "none"
        self.provider = "none"
        self.kind: str | None = None
        self.first_at: float | None = None
        self.streaming = False

    def asked(self, model: object, routes: Mapping[str, object] | None) -> None:
        """The request asked for ``model`` (served by the gateway's ``routes``)."""
        if self.metrics is not None:
            known = routes is None or (isinstance(model, str) and model in routes)
            self.model = self.metrics.model_label(model, known=known)

    def stream_started(self, now: float) -> None:
        """The stream's headers went out with its first content ready."""
        if self.metrics is None:
            return
        self.first_at = now
        self.streaming = True
        self.metrics.streams.inc()

    def answered(self, result: Any) -> None:
        """The call succeeded: who answered, and every attempt it took."""
        if self.metrics is None:
            return
        self.provider = result.provider or "none"
        for attempt in result.attempts:
            self.metrics.attempts.labels(attempt.provider, attempt.error_type or "ok").inc()

    def failed(self, error: AsyncProvError, kind: str, *, answered: bool = False) -> None:
        """The call (``answered``: its stream, after content) failed with ``error``."""
        if self.metrics is None:
            return
        self.kind = kind
        self.metrics.errors.labels(kind).inc()
        if answered:
            return
        tried = getattr(error, "exceptions", None) or (error,)
        for attempt in tried:
            name = getattr(attempt, "provider", None)
            if isinstance(name, str):
                self.metrics.attempts.labels(name, type(attempt).__name__).inc()

    def refused(self, status: int) -> None:
        """Answered with an error status and no failure recorded: the gateway refused."""
        if self.metrics is not None and self.kind is None:
            kind = _REFUSALS.get(status)
            if kind is None:
                kind = "invalid_request_error" if status < 500 else "server_error"
            self.kind = kind
            self.metrics.errors.labels(kind).inc()


RECORD_KEY: web.RequestKey[RequestRecord] = web.RequestKey("metrics", RequestRecord)
"""Where a request's ``RequestRecord`` is kept (only while metrics are on)."""

NOT_RECORDED = RequestRecord(None)
"""The record of every request while metrics are off: it records nothing."""
