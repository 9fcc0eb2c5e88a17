"""OpenTelemetry instrumentation of a call, after the GenAI semantic conventions
(``gen_ai.*`` attributes and ``gen_ai.client.*`` metrics, as of semantic conventions
1.3x). Imported only once a tracer or meter provider is configured (see ``_telemetry``).

One ``chat {model}`` client span per ``create()``: current while the attempts run (so
HTTP instrumentation nests under it), ended when the completion arrives, or, for a
stream, when the stream ends, is closed, is broken out of or is dropped. Attempt spans
are its children, written from the call's attempt records (the failover engine owns
them), so the engine itself does no telemetry work. Attributes carry names, numbers and
error class names only: never a key, a proxy, an error's text or, unless
``capture_content`` is on, a message.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Sequence
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._clock import clock
from ._errors import APIError, APITimeoutError, StreamInterruptedError
from ._failover import LOST_RACE
from ._genai import (
    Where,
    input_messages,
    output_messages,
    request_attributes,
    streamed_messages,
)
from ._streaming import AsyncStream
from ._types import Attempt, ChatCompletion, ChatCompletionChunk, ChatRequest, Usage
from ._version import __version__
from .providers.base import Provider

__all__ = ["CallObserver", "Instruments"]

_T = TypeVar("_T")

_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                     40.96, 81.92)  # fmt: skip
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                  16777216, 67108864)  # fmt: skip


class Instruments:
    """A tracer and the four GenAI client metrics, made once per provider pair."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        *,
        capture_content: bool,
        chunk_timings: bool = True,
    ) -> None:
        self.capture_content = capture_content
        self.providers = (tracer_provider, meter_provider)
        self.tracer = (
            tracer_provider.get_tracer("asyncprov", __version__)
            if tracer_provider is not None
            else None
        )
        self.duration: Histogram | None = None
        self.first_chunk: Histogram | None = None
        self.per_chunk: Histogram | None = None
        self.tokens: Histogram | None = None
        if meter_provider is not None:
            meter = meter_provider.get_meter("asyncprov", __version__)
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            )
            self.first_chunk = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to receive the first chunk of a streamed response.",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
            )
            if chunk_timings:
                self.per_chunk = meter.create_histogram(
                    "gen_ai.client.operation.time_per_output_chunk",
                    unit="s",
                    description="Time per output chunk after the first, of a streamed response.",
                    explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
                )
            self.tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
            )
        self._where: dict[tuple[type[Provider], str], Where] = {}

    def where(self, provider: Provider) -> Where:
        key = (type(provider), provider.base_url)
        found = self._where.get(key)
        if found is None:
            if len(self._where) >= 256:  # per-call base URLs: keep the cache bounded
                self._where.clear()
            found = self._where[key] = Where(provider)
        return found

    def observe(self, provider: Provider, request: ChatRequest) -> CallObserver:
        return CallObserver(self, provider, request)


def _caller_error_type(error: BaseException) -> str:
    """The class of the error a stream's reader sees for ``error`` from its source:
    after content, ``AsyncStream`` raises any API error as ``StreamInterruptedError``
    (``StreamTimeoutError`` for a timeout); see ``AsyncStream._with_partial``."""
    if isinstance(error, APIError) and not isinstance(error, StreamInterruptedError):
        return (
            "StreamTimeoutError" if isinstance(error, APITimeoutError) else "StreamInterruptedError"
        )
    return type(error).__name__


class CallObserver:
    """One call's span and measurements, from ``create()`` to the end of its answer."""

    def __init__(self, instruments: Instruments, provider: Provider, request: ChatRequest) -> None:
        self.instruments = instruments
        self.provider = provider
        self.request = request
        self.started = clock()
        self.ended = False
        self.metric_attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": request.model,
        }
        # A failover group's provider is the member that answers (or, failing, was tried
        # last); until that is known, the first member is the best knowledge there is.
        first = provider if not provider.is_group else next(iter(_members(provider)), None)
        if first is not None:
            self.metric_attributes.update(instruments.where(first).attributes())
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None
        self.parts: list[str] | None = [] if instruments.capture_content else None
        self.winner: Span | None = None
        self.span: Span | None = None
        tracer = instruments.tracer
        if tracer is not None:
            attributes = request_attributes(request)
            attributes.update(self.metric_attributes)
            if provider.is_group:
                attributes["asyncprov.failover"] = True
            else:
                attributes["asyncprov.provider"] = provider.name
            if instruments.capture_content:
                attributes["gen_ai.input.messages"] = input_messages(request)
            self.span = tracer.start_span(
                f"chat {request.model}", kind=SpanKind.CLIENT, attributes=attributes
            )

    async def run(self, answer: Awaitable[_T], attempts: Sequence[Attempt]) -> _T:
        """Await ``answer`` (the call's attempts) with the call's span current."""
        token = (
            None if self.span is None else otel_context.attach(trace.set_span_in_context(self.span))
        )
        try:
            result = await answer
        except BaseException as error:
            self._attempt_spans(attempts, None)
            self._answered_by(attempts[-1].provider if attempts else None)
            self._end(_error_type(error), cancelled=not isinstance(error, Exception))
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        if isinstance(result, AsyncStream):
            self._attempt_spans(attempts, result.provider)
            self._answered_by(result.provider)
            first = self.instruments.first_chunk
            if first is not None:
                first.record(clock() - self.started, self.metric_attributes)
            if self.span is not None:
                self.span.set_attribute(
                    "gen_ai.response.time_to_first_chunk", round(clock() - self.started, 6)
                )
            if not result._intercept(lambda source, head: _ObservedSource(source, self, head)):
                self.end_stream(None, "completed")  # it ended before any content
        elif isinstance(result, ChatCompletion):
            self._attempt_spans(attempts, result.provider)
            self._answered_by(result.provider)
            self.response_model, self.response_id = result.model or None, result.id or None
            self.finish_reasons = [c.finish_reason or "" for c in result.choices]
            self.usage = result.usage
            if self.span is not None and self.instruments.capture_content:
                self.span.set_attribute(
                    "gen_ai.output.messages",
                    output_messages(result),
                )
            self._end(None)
        return result

    def _answered_by(self, name: str | None) -> None:
        """For a failover call, the provider that answered (or was tried last) is the
        call's provider."""
        if not self.provider.is_group or name is None:
            return
        member = _member(self.provider, name)
        if member is not None:
            self.metric_attributes.update(self.instruments.where(member).attributes())
        if self.span is not None:
            self.span.set_attribute("asyncprov.provider", name)
            if member is not None:
                self.span.set_attributes(self.instruments.where(member).attributes())

    def _attempt_spans(self, attempts: Sequence[Attempt], streaming: str | None) -> None:
        """One child span per attempt, from its record; a stream's winning attempt
        stays open until the stream ends."""
        tracer = self.instruments.tracer
        if tracer is None or self.span is None:
            return
        parent = trace.set_span_in_context(self.span)
        now_ns = time.time_ns()
        for attempt in attempts:
            member = _member(self.provider, attempt.provider) or self.provider
            attributes = self.instruments.where(member).attributes()
            attributes.update(
                {
                    "gen_ai.operation.name": "chat",
                    "asyncprov.provider": attempt.provider,
                    "asyncprov.attempt.number": attempt.number,
                    "asyncprov.attempt.reason": attempt.reason,
                    "asyncprov.attempt.waited": attempt.waited,
                }
            )
            if attempt.ok:
                outcome = "ok"
            elif attempt.error_type == "Cancelled":
                outcome = "lost_hedge" if attempt.error == LOST_RACE else "cancelled"
            else:
                outcome = "error"
                attributes["error.type"] = attempt.error_type or "_OTHER"
            attributes["asyncprov.attempt.outcome"] = outcome
            start_ns = int(attempt.started_at * 1e9) if attempt.started_at else now_ns
            span = tracer.start_span(
                f"attempt {attempt.provider}",
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=start_ns,
            )
            if outcome == "error":
                span.set_status(Status(StatusCode.ERROR, attempt.error_type))
            if attempt.ok and attempt.provider == streaming and self.winner is None:
                self.winner = span  # reads the stream: ends with it
                continue
            span.end(end_time=min(now_ns, start_ns + int(attempt.seconds * 1e9)))
        if self.span is not None:
            self.span.set_attribute("asyncprov.attempts", len(attempts))

    def see(self, chunk: ChatCompletionChunk) -> None:
        """A chunk of the stream: what the span reports about the response."""
        if self.response_model is None and chunk.model:
            self.response_model = chunk.model
        if self.response_id is None and chunk.id:
            self.response_id = chunk.id
        for choice in chunk.choices:
            if choice.finish_reason:
                while len(self.finish_reasons) <= choice.index:
                    self.finish_reasons.append("")
                self.finish_reasons[choice.index] = choice.finish_reason
            if self.parts is not None and choice.index == 0 and choice.delta.content:
                self.parts.append(choice.delta.content)
        if chunk.usage is not None:
            self.usage = chunk.usage

    def end_stream(self, error_type: str | None, outcome: str) -> None:
        """The stream ended (``outcome``: completed, closed, dropped, cancelled, error)."""
        if self.ended:
            return
        if self.span is not None:
            self.span.set_attribute("asyncprov.stream.outcome", outcome)
            if self.parts is not None:
                finish = self.finish_reasons[0] if self.finish_reasons else None
                text = "".join(self.parts)
                self.span.set_attribute("gen_ai.output.messages", streamed_messages(text, finish))
                self.parts = None
        self._end(error_type, cancelled=outcome == "cancelled")

    def _end(self, error_type: str | None, *, cancelled: bool = False) -> None:
        if self.ended:
            return
        self.ended = True
        seconds = clock() - self.started
        attributes = dict(self.metric_attributes)
        if self.response_model:
            attributes["gen_ai.response.model"] = self.response_model
        usage = self.usage
        tokens = self.instruments.tokens
        if tokens is not None and usage is not None and error_type is None:
            tokens.record(usage.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
            tokens.record(usage.completion_tokens, {**attributes, "gen_ai.token.type": "output"})
        if error_type is not None:
            attributes["error.type"] = error_type
        duration = self.instruments.duration
        if duration is not None:
            duration.record(seconds, attributes)
        span = self.span
        if span is None:
            return
        if self.winner is not None:
            self.winner.end()
        if self.response_model:
            span.set_attribute("gen_ai.response.model", self.response_model)
        if self.response_id:
            span.set_attribute("gen_ai.response.id", self.response_id)
        if self.finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", self.finish_reasons)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        if error_type is not None:
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
        elif cancelled:  # the caller's doing, not a failure of the call
            span.set_attribute("asyncprov.outcome", "cancelled")
        span.end()


def _error_type(error: BaseException) -> str | None:
    """``error.type`` for a failure (an error class name); ``None`` for a cancellation."""
    return type(error).__name__ if isinstance(error, Exception) else None


def _members(group: Provider) -> Sequence[Provider]:
    members: Sequence[Provider] = getattr(group, "providers", ())
    return members


def _member(provider: Provider, name: str) -> Provider | None:
    if not provider.is_group:
        return provider if provider.name == name else None
    return next((member for member in _members(provider) if member.name == name), None)


class _ObservedSource(AsyncGenerator[ChatCompletionChunk, None]):
    """Stands between a stream and its source while telemetry is on: sees each chunk,
    and ends the call's span when the source ends, fails, is closed or is dropped."""

    def __init__(
        self,
        source: AsyncGenerator[ChatCompletionChunk, None],
        observer: CallObserver,
        head: Sequence[ChatCompletionChunk],
    ) -> None:
        self._source = source
        self._observer = observer
        for chunk in head:  # read before create() returned
            observer.see(chunk)
        self._per_chunk = observer.instruments.per_chunk
        self._attributes = observer.metric_attributes
        self._last = clock()
        # Dropped unread: the span still ends (the source closes itself when collected).
        self._finalizer = weakref.finalize(self, observer.end_stream, None, "dropped")

    @property
    def ag_running(self) -> bool:
        return bool(getattr(self._source, "ag_running", False))

    async def __anext__(self) -> ChatCompletionChunk:
        observer = self._observer
        try:
            chunk = await self._source.__anext__()
        except StopAsyncIteration:
            observer.end_stream(None, "completed")
            raise
        except Exception as error:
            observer.end_stream(_caller_error_type(error), "error")
            raise
        except BaseException:
            observer.end_stream(None, "cancelled")
            raise
        per_chunk = self._per_chunk
        if per_chunk is not None:
            now = clock()
            per_chunk.record(now - self._last, self._attributes)
            self._last = now
        observer.see(chunk)
        return chunk

    async def asend(self, value: None) -> ChatCompletionChunk:
        return await self.__anext__()

    async def athrow(self, *args: Any) -> ChatCompletionChunk:
        return await self._source.athrow(*args)

    async def aclose(self) -> None:
        self._observer.end_stream(None, "closed")
        await self._source.aclose()
