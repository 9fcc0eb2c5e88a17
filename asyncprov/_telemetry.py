"""``Telemetry``: where a client's OpenTelemetry spans and metrics go, decided per call
with one cheap check.

Nothing of OpenTelemetry is imported here (unless the environment names a provider for
the API to load). A call asks ``observer()``: while the API is not loaded, or loaded
with no global provider set, that is a few dictionary look-ups (the API's own globals,
not its getters, which read the environment each time) and the answer is ``None``. The
instrumentation (``_otel``) is imported only once a provider that records is there. A
global provider can be set only once per process, so once it is set (a no-op one
included) the decision for that signal is kept.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

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
        # Per signal, the provider used once it is decided for good: given here, or the
        # global one once set (it can be set only once per process).
        self._tracer: tuple[TracerProvider | None] | None = (
            (tracer_provider,) if tracer_provider else None
        )
        self._meter: tuple[MeterProvider | None] | None = (
            (meter_provider,) if meter_provider else None
        )
        self._settled = not enabled  # nothing more can change: keep the answer

    def __repr__(self) -> str:
        return f"Telemetry(enabled={self.enabled}, capture_content={self.capture_content})"

    def observer(self, provider: Provider, request: ChatRequest) -> CallObserver | None:
        """The observer of one call, or ``None`` when nothing would be recorded."""
        if self._settled:
            instruments = self._instruments
        elif (
            self._tracer is not None
            or self._meter is not None
            or self._named_in_env
            or "opentelemetry.trace" in sys.modules
            or "opentelemetry.metrics" in sys.modules
        ):
            instruments = self._resolve()
        else:
            return None  # no provider given, and the API not even loaded: none set
        if instruments is None:
            return None
        return instruments.observe(provider, request)

    def _resolve(self) -> Instruments | None:
        tracer, meter = self._tracer, self._meter
        if tracer is None:
            tracer = self._tracer = _global_tracer(self._named_in_env)
        if meter is None:
            meter = self._meter = _global_meter(self._named_in_env)
        self._settled = tracer is not None and meter is not None
        tracer_provider = tracer[0] if tracer else None
        meter_provider = meter[0] if meter else None
        if tracer_provider is None and meter_provider is None:
            return None  # none set yet, or no-op ones: the usual case while telemetry is off
        instruments = self._instruments
        if instruments is None or instruments.providers != (tracer_provider, meter_provider):
            from ._otel import Instruments

            instruments = self._instruments = Instruments(
                tracer_provider,
                meter_provider,
                capture_content=self.capture_content,
                chunk_timings=self.chunk_timings,
            )
        return instruments


def _global_tracer(named_in_env: bool) -> tuple[TracerProvider | None] | None:
    """The global tracer provider once it is set for good, or ``None`` while it is not
    (the API not loaded, or still its default proxy)."""
    api: Any = sys.modules.get("opentelemetry.trace")
    if api is None:
        if not named_in_env:
            return None  # the API is not even loaded: nobody has set a provider
        api = importlib.import_module("opentelemetry.trace")
    # The API's own global (None until set): a look-up, where its getter reads the
    # environment each time. An API without it is asked the public way.
    current: Any = getattr(api, "_TRACER_PROVIDER", _UNKNOWN)
    if current is None and not named_in_env:
        return None
    provider: TracerProvider = (
        api.get_tracer_provider() if current is _UNKNOWN or current is None else current
    )
    if isinstance(provider, api.ProxyTracerProvider):
        return None
    return (None if isinstance(provider, api.NoOpTracerProvider) else provider,)


def _global_meter(named_in_env: bool) -> tuple[MeterProvider | None] | None:
    """The global meter provider once it is set for good (see ``_global_tracer``)."""
    api: Any = sys.modules.get("opentelemetry.metrics")
    if api is None:
        if not named_in_env:
            return None
        api = importlib.import_module("opentelemetry.metrics")
    internal = sys.modules.get("opentelemetry.metrics._internal")
    current: Any = getattr(internal, "_METER_PROVIDER", _UNKNOWN)
    if current is None and not named_in_env:
        return None
    provider: MeterProvider = (
        api.get_meter_provider() if current is _UNKNOWN or current is None else current
    )
    if type(provider).__name__ == "_ProxyMeterProvider":  # the default: a private class
        return None
    return (None if isinstance(provider, api.NoOpMeterProvider) else provider,)


_UNKNOWN = object()
