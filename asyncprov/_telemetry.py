"""``Telemetry``: where a client's OpenTelemetry spans and metrics go, decided per call
with one cheap check.

Nothing of OpenTelemetry is imported here. A call asks ``observer()``: while no tracer
or meter provider can have been configured (``opentelemetry`` not imported, none given,
none named in the environment) that is a dictionary look-up and the answer is ``None``;
the instrumentation (``_otel``) is imported only once a provider is there. A global
provider can be set only once per process, so once both are found the answer is kept.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._otel import CallObserver, Instruments
    from ._types import ChatRequest
    from .providers.base import Provider

__all__ = ["CAPTURE_CONTENT_ENV", "Telemetry"]

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""The GenAI instrumentations' opt-in for recording messages on spans."""

_PROVIDER_ENVS = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")


def _capture_from_env() -> bool:
    value = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower()
    return value in ("true", "1", "yes", "span_only", "span_and_event")


class Telemetry:
    """Where a client's OpenTelemetry spans and metrics go (the OpenTelemetry GenAI
    semantic conventions: a ``chat {model}`` span per call with one child per attempt,
    and the ``gen_ai.client.*`` metrics).

    Every client has one. By default it uses the global tracer and meter providers
    once they are configured (``opentelemetry.trace.set_tracer_provider``, or the
    ``opentelemetry-instrument`` launcher), and does nothing while they are not: the
    default no-op and proxy providers count as not configured. Needs
    ``asyncprov[otel]`` (``opentelemetry-api``); the SDK and exporters are yours.

    Args:
        tracer_provider: spans go here instead of the global provider.
        meter_provider: metrics go here instead of the global provider.
        capture_content: record the messages sent and received on the call's span
            (``gen_ai.input.messages``, ``gen_ai.output.messages``). Off unless the
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` environment variable
            is ``true``. Keys and proxy credentials are never recorded.
        chunk_timings: record ``gen_ai.client.operation.time_per_output_chunk`` for
            every streamed chunk, as the conventions ask. The OpenTelemetry SDK takes
            about 10 µs per recording, more than asyncprov's own cost of a chunk;
            ``False`` leaves that one metric out (see ``benchmarks/TELEMETRY.md``).
        enabled: ``False`` turns telemetry off for the client, providers or not.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> telemetry = Telemetry(tracer_provider=TracerProvider())
        >>> client = AsyncClient(OpenaiChat, telemetry=telemetry)
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool | None = None,
        chunk_timings: bool = True,
        enabled: bool = True,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.capture_content = _capture_from_env() if capture_content is None else capture_content
        self.chunk_timings = chunk_timings
        self.enabled = enabled
        self._named_in_env = any(name in os.environ for name in _PROVIDER_ENVS)
        self._instruments: Instruments | None = None
        self._found: tuple[object, object] = (False, False)  # nothing looked for yet
        self._settled = not enabled  # nothing more can change: keep the answer

    def __repr__(self) -> str:
        return f"Telemetry(enabled={self.enabled}, capture_content={self.capture_content})"

    def observer(self, provider: Provider, request: ChatRequest) -> CallObserver | None:
        """The observer of one call, or ``None`` when nothing would be recorded."""
        instruments = self._instruments if self._settled else self._resolve()
        if instruments is None:
            return None
        return instruments.observe(provider, request)

    def _resolve(self) -> Instruments | None:
        if self._named_in_env:  # the API loads a provider named there on first ask
            import opentelemetry.metrics
            import opentelemetry.trace  # noqa: F401
        trace_api = sys.modules.get("opentelemetry.trace")
        metrics_api = sys.modules.get("opentelemetry.metrics")
        tracer_provider = self.tracer_provider or _configured_tracer(trace_api)
        meter_provider = self.meter_provider or _configured_meter(metrics_api)
        found = (tracer_provider, meter_provider)
        if found != self._found:
            self._found = found
            self._instruments = None
            if tracer_provider is not None or meter_provider is not None:
                from ._otel import Instruments

                self._instruments = Instruments(
                    tracer_provider,
                    meter_provider,
                    capture_content=self.capture_content,
                    chunk_timings=self.chunk_timings,
                )
        self._settled = tracer_provider is not None and meter_provider is not None
        return self._instruments


def _configured_tracer(api: ModuleType | None) -> TracerProvider | None:
    """The global tracer provider of the loaded API, unless it is the default (a proxy)
    or a no-op one."""
    if api is None:
        return None
    provider: TracerProvider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None
    return provider


def _configured_meter(api: ModuleType | None) -> MeterProvider | None:
    """The global meter provider of the loaded API, unless it is the default (a private
    proxy class) or a no-op one."""
    if api is None:
        return None
    provider: MeterProvider = api.get_meter_provider()
    if (
        isinstance(provider, api.NoOpMeterProvider)
        or type(provider).__name__ == "_ProxyMeterProvider"
    ):
        return None
    return provider
