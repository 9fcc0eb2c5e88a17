"""OpenTelemetry spans and metrics of a call, read back through the SDK's in-memory span
exporter and metric reader (a tracer and meter provider passed to the client, so no test
touches the process-wide providers; those are tested in subprocesses)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from asyncprov import (
    AsyncClient,
    Client,
    InternalServerError,
    RateLimitError,
    StreamInterruptedError,
    Telemetry,
)
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, ProxyServer, Reply, instant_retries


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    telemetry: Telemetry

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def call_span(self) -> ReadableSpan:
        [span] = [s for s in self.finished() if s.name.startswith("chat ")]
        return span

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def _recorded(**options: Any) -> Recorded:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        **options,
    )
    return Recorded(spans, reader, telemetry)


@pytest.fixture
def recorded() -> Recorded:
    return _recorded()


@pytest.fixture
async def servers() -> AsyncIterator[list[OpenAITestServer]]:
    a, b, c = OpenAITestServer(), OpenAITestServer(), OpenAITestServer()
    async with a, b, c:
        yield [a, b, c]


def _port(server: OpenAITestServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1].split("/", 1)[0])


async def test_a_hedged_failover_call_is_a_span_with_one_child_per_attempt(
    servers: list[OpenAITestServer], recorded: Recorded
) -> None:
    """The call's span is the parent of one span per attempt, each saying its provider,
    number, why it started and how it ended; the call says who answered and its usage."""
    slow, broken, good = servers
    slow.add_reply(Reply(content="too late", delay=5))
    broken.add_reply(Reply(status=500))
    good.add_reply(Reply(content="from the good one"))
    group = RetryProvider(
        [
            OpenAICompatible(base_url=slow.base_url, name="slow"),
            OpenAICompatible(base_url=broken.base_url, name="broken"),
            OpenAICompatible(base_url=good.base_url, name="good"),
        ],
        shuffle=False,
        hedge=True,
        hedge_delay=0.05,
    )
    with instant_retries():
        async with AsyncClient(group, telemetry=recorded.telemetry) as client:
            completion = await client.chat.completions.create(
                model="m", messages="hi there", max_tokens=50, temperature=0.5
            )
    assert completion.provider == "good"

    call = recorded.call_span()
    assert call.name == "chat m"
    assert call.kind is SpanKind.CLIENT
    assert call.status.status_code is StatusCode.UNSET
    attributes = dict(call.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "m"
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.provider.name"] == "openaicompatible"
    assert attributes["asyncprov.provider"] == "good"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == _port(good)
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.response.model"] == completion.model
    assert attributes["gen_ai.response.id"] == completion.id
    assert completion.usage is not None
    assert attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attributes["asyncprov.attempts"] == 3
    assert "error.type" not in attributes

    children = [s for s in recorded.finished() if s is not call]
    assert call.context is not None
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in children)
    assert all(
        s.context is not None and s.context.trace_id == call.context.trace_id for s in children
    )
    by_provider = {dict(s.attributes or {})["asyncprov.provider"]: s for s in children}
    assert sorted(by_provider) == ["broken", "good", "slow"]

    def said(name: str) -> dict[str, Any]:
        found = dict(by_provider[name].attributes or {})
        return {k: v for k, v in found.items() if k.startswith(("asyncprov.attempt.", "error."))}

    assert said("slow") | {"asyncprov.attempt.waited": 0} == {
        "asyncprov.attempt.number": 1,
        "asyncprov.attempt.reason": "first",
        "asyncprov.attempt.outcome": "lost_hedge",
        "asyncprov.attempt.waited": 0,
    }
    assert said("broken") == {
        "asyncprov.attempt.number": 1,
        "asyncprov.attempt.reason": "hedge",
        "asyncprov.attempt.outcome": "error",
        "asyncprov.attempt.waited": 0.0,
        "error.type": "InternalServerError",
    }
    assert by_provider["broken"].status.status_code is StatusCode.ERROR
    assert said("good")["asyncprov.attempt.reason"] == "failover"
    assert said("good")["asyncprov.attempt.outcome"] == "ok"
    assert dict(by_provider["good"].attributes or {})["server.port"] == _port(good)
    for child in children:  # inside the call's time
        assert child.start_time is not None and call.start_time is not None
        assert child.end_time is not None and call.end_time is not None
        assert call.start_time <= child.start_time <= child.end_time <= call.end_time

    [duration] = recorded.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert dict(duration.attributes)["gen_ai.provider.name"] == "openaicompatible"
    assert dict(duration.attributes)["server.port"] == _port(good)
    assert "error.type" not in duration.attributes
    tokens = {
        dict(p.attributes)["gen_ai.token.type"]: p.sum
        for p in recorded.points("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": completion.usage.prompt_tokens,
        "output": completion.usage.completion_tokens,
    }
    assert recorded.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_a_retried_call_says_retry_and_the_wait(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """A lone provider's retry is a second attempt span: number 2, reason retry."""
    server.add_reply(Reply(status=503), "ok")
    with instant_retries():
        async with AsyncClient(
            base_url=server.base_url, max_retries=1, telemetry=recorded.telemetry
        ) as client:
            await client.chat.completions.create(model="m", messages="hi")
    attempts = sorted(
        (dict(s.attributes or {}) for s in recorded.finished() if s.name.startswith("attempt")),
        key=lambda a: a["asyncprov.attempt.number"],
    )
    assert [
        (
            a["asyncprov.attempt.number"],
            a["asyncprov.attempt.reason"],
            a["asyncprov.attempt.outcome"],
        )
        for a in attempts
    ] == [(1, "first", "error"), (2, "retry", "ok")]
    assert attempts[0]["error.type"] == "InternalServerError"


async def test_a_stream_records_first_chunk_and_per_chunk_times(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """A stream read to its end ends its span then, with the chunk metrics recorded."""
    server.add_reply(Reply(content="one two three four five", chunks=5))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        stream = await client.chat.completions.create(
            model="m", messages="hi", stream=True, stream_options={"include_usage": True}
        )
        assert recorded.finished() == []  # still streaming
        chunks = [chunk async for chunk in stream]
    call = recorded.call_span()
    attributes = dict(call.attributes or {})
    assert attributes["asyncprov.stream.outcome"] == "completed"
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.time_to_first_chunk"] >= 0
    [first] = recorded.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.count == 1
    [per_chunk] = recorded.points("gen_ai.client.operation.time_per_output_chunk")
    # Every chunk after those read before create() returned (the role and first text).
    assert per_chunk.count == len(chunks) - 2
    [attempt] = [s for s in recorded.finished() if s.name.startswith("attempt")]
    assert attempt.end_time is not None and call.end_time is not None
    assert attempt.end_time <= call.end_time  # the answering attempt lasts the stream


@pytest.mark.parametrize("how", ["break and drop", "break in async with", "aclose"])
async def test_a_stream_left_early_ends_its_span(
    server: OpenAITestServer, recorded: Recorded, how: str
) -> None:
    """Breaking out of a stream, closing it or dropping it ends the call's span."""
    server.add_reply(Reply(content=" ".join(["word"] * 50), chunk_delay=0.01))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        if how == "break in async with":
            async with stream:
                async for _ in stream:
                    break
        elif how == "aclose":
            await stream.__anext__()
            await stream.aclose()
        else:
            async for _ in stream:
                break
            del stream
            gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)
        call = recorded.call_span()
    outcome = dict(call.attributes or {})["asyncprov.stream.outcome"]
    assert outcome == ("dropped" if how == "break and drop" else "closed")
    assert call.status.status_code is StatusCode.UNSET
    [duration] = recorded.points("gen_ai.client.operation.duration")
    assert duration.count == 1


async def test_an_error_sets_error_type(server: OpenAITestServer, recorded: Recorded) -> None:
    """A failed call's span, attempt span and duration carry the error's class."""
    server.add_reply(Reply(status=429))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="m", messages="hi")
    call = recorded.call_span()
    assert dict(call.attributes or {})["error.type"] == "RateLimitError"
    assert call.status.status_code is StatusCode.ERROR
    [attempt] = [s for s in recorded.finished() if s is not call]
    assert dict(attempt.attributes or {})["error.type"] == "RateLimitError"
    [duration] = recorded.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes)["error.type"] == "RateLimitError"
    assert recorded.points("gen_ai.client.token.usage") == []


async def test_a_stream_broken_after_content_says_so(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """A stream cut after content ends its span with the error its reader saw."""
    server.add_reply(Reply(content="a b c d e f", fault="truncate", fault_after=2))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        with pytest.raises(StreamInterruptedError):
            async for _ in stream:
                pass
    attributes = dict(recorded.call_span().attributes or {})
    assert attributes["error.type"] == "StreamInterruptedError"
    assert attributes["asyncprov.stream.outcome"] == "error"


def _every_value(recorded: Recorded) -> str:
    """Every attribute value of every span and metric point, as one string."""
    values: list[str] = []
    for span in recorded.finished():
        values.append(span.name)
        values.extend(f"{k}={v}" for k, v in (span.attributes or {}).items())
        values.append(str(span.status.description))
    data = recorded.metrics.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    values.extend(f"{k}={v}" for k, v in point.attributes.items())
    return "\n".join(values)


@pytest.mark.parametrize("stream", [False, True])
async def test_no_message_content_unless_asked(
    server: OpenAITestServer, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prompts and replies stay off spans by default; the conventions' switch (or
    ``capture_content=True``) records them as ``gen_ai.*.messages``."""
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    quiet = _recorded()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    loud = _recorded()
    for recorded in (quiet, loud):
        server.add_reply(Reply(content="the secret reply"))
        async with AsyncClient(
            base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
        ) as client:
            answer = await client.chat.completions.create(
                model="m",
                messages=[
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "the private prompt"},
                ],
                stream=stream,
            )
            if stream:
                async for _ in answer:  # type: ignore[union-attr]
                    pass
    said = _every_value(quiet)
    assert "private prompt" not in said and "secret reply" not in said
    assert "be brief" not in said
    attributes = dict(loud.call_span().attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "user", "parts": [{"type": "text", "content": "the private prompt"}]},
    ]
    [output] = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["role"] == "assistant"
    assert output["parts"] == [{"type": "text", "content": "the secret reply"}]
    assert output["finish_reason"] == "stop"


async def test_no_key_or_proxy_credential_in_any_attribute(server: OpenAITestServer) -> None:
    """Keys and proxy credentials appear in no span or metric, messages recorded or not."""
    recorded = _recorded(capture_content=True)
    async with ProxyServer(username="proxyuser", password="proxy-pass-123") as proxy:
        server.add_reply("hello", Reply(status=401))
        async with AsyncClient(
            base_url=server.base_url,
            api_key="sk-test-key-abcdef123456",
            proxy=proxy.url_with_auth(),
            max_retries=0,
            telemetry=recorded.telemetry,
        ) as client:
            await client.chat.completions.create(model="m", messages="hi")
            with pytest.raises(Exception):  # noqa: B017 (any failure: its text is the point)
                await client.chat.completions.create(model="m", messages="hi")
    assert len(proxy.requests) == 2
    said = _every_value(recorded)
    for secret in ("sk-test-key-abcdef123456", "proxyuser", "proxy-pass-123"):
        assert secret not in said
    assert "127.0.0.1" in said  # the server is named; the proxy never is


def test_the_sync_client_makes_the_same_spans(recorded: Recorded) -> None:
    """``Client`` forwards its telemetry: the same call span and attempt span, the call
    a child of the calling thread's current span (the loop thread is no break)."""
    tracer_provider = recorded.telemetry.tracer_provider
    assert tracer_provider is not None
    tracer = tracer_provider.get_tracer("tests")
    with OpenAITestServer().run_in_thread() as server:
        server.add_reply("hello")
        with (
            tracer.start_as_current_span("the caller's work") as outer,
            Client(base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry) as client,
        ):
            for _ in client.chat.completions.create(model="m", messages="hi", stream=True):
                pass
    call_span = recorded.call_span()
    assert dict(call_span.attributes or {})["asyncprov.stream.outcome"] == "completed"
    assert call_span.parent is not None
    assert call_span.parent.span_id == outer.get_span_context().span_id
    names = sorted(s.name for s in recorded.finished() if s is not call_span)
    assert names == ["attempt OpenAICompatible", "the caller's work"]


async def test_a_batch_makes_one_call_span_per_request(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """The batch runner's requests are ordinary calls: one span each."""
    server.add_reply("a", "b", "c")
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        requests = [{"custom_id": str(i), "messages": f"say {i}"} for i in range(3)]
        async with client.chat.completions.batch(requests, model="m") as results:
            assert len([r async for r in results]) == 3
    calls = [s for s in recorded.finished() if s.name == "chat m"]
    assert len(calls) == 3
    [duration] = recorded.points("gen_ai.client.operation.duration")
    assert duration.count == 3


def _run(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter, with no ``OTEL_*`` settings but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_CALL = """
    import asyncio, sys
    from asyncprov import AsyncClient
    from asyncprov.testing import OpenAITestServer

    async def main():
        async with OpenAITestServer() as server:
            async with AsyncClient(base_url=server.base_url) as client:
                await client.chat.completions.create(model="m", messages="hi")
                stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
                async for _ in stream:
                    pass

    asyncio.run(main())
    print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "asyncprov._otel"))))
"""


def test_off_by_default_imports_nothing() -> None:
    """With no provider configured, a call imports nothing of OpenTelemetry."""
    assert _run(_CALL).strip() == "[]"


def test_a_global_no_op_provider_counts_as_off() -> None:
    """Setting the API's no-op providers globally loads no instrumentation."""
    code = textwrap.dedent("""
        from opentelemetry import metrics, trace
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        metrics.set_meter_provider(metrics.NoOpMeterProvider())
    """) + textwrap.dedent(_CALL)
    assert "asyncprov._otel" not in _run(code)


def test_the_global_providers_are_used_once_configured() -> None:
    """A client made before the global provider was set records once it is set."""
    code = """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from asyncprov import AsyncClient
        from asyncprov.testing import OpenAITestServer

        async def main():
            async with OpenAITestServer() as server:
                async with AsyncClient(base_url=server.base_url) as client:
                    await client.chat.completions.create(model="m", messages="before")
                    exporter = InMemorySpanExporter()
                    provider = TracerProvider()
                    provider.add_span_processor(SimpleSpanProcessor(exporter))
                    trace.set_tracer_provider(provider)
                    await client.chat.completions.create(model="m", messages="after")
            print(sorted(s.name for s in exporter.get_finished_spans()))

        asyncio.run(main())
    """
    assert _run(code).strip() == "['attempt OpenAICompatible', 'chat m']"


@pytest.fixture
def _no_capture_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    yield


@pytest.mark.usefixtures("_no_capture_env")
def test_telemetry_can_be_turned_off() -> None:
    """``Telemetry(enabled=False)`` records nothing, whatever the providers."""
    recorded = _recorded(enabled=False)
    assert recorded.telemetry.observer is not None
    provider = OpenAICompatible(base_url="http://127.0.0.1:9/v1")
    from asyncprov._request import build_request

    request = build_request(model="m", messages="hi", stream=False)
    assert recorded.telemetry.observer(provider, request) is None
    assert repr(recorded.telemetry) == "Telemetry(enabled=False, capture_content=False)"


async def test_chunk_timings_can_be_left_out(server: OpenAITestServer) -> None:
    """``chunk_timings=False`` records no time per output chunk, and the rest as ever."""
    recorded = _recorded(chunk_timings=False)
    server.add_reply(Reply(content="one two three four", chunks=4))
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        async for _ in stream:
            pass
    assert recorded.points("gen_ai.client.operation.time_per_output_chunk") == []
    assert len(recorded.points("gen_ai.client.operation.time_to_first_chunk")) == 1
    assert len(recorded.points("gen_ai.client.operation.duration")) == 1


async def test_a_failover_call_that_fails_names_the_last_provider_tried(
    servers: list[OpenAITestServer], recorded: Recorded
) -> None:
    """When every member fails, the call's provider attributes are the last one tried's,
    so the duration metric still says which provider and which error."""
    first, last, _ = servers
    first.add_reply(Reply(status=500))
    last.add_reply(Reply(status=502))
    group = RetryProvider(
        [
            OpenAICompatible(base_url=first.base_url, name="first"),
            OpenAICompatible(base_url=last.base_url, name="last"),
        ],
        shuffle=False,
    )
    with instant_retries():
        async with AsyncClient(group, telemetry=recorded.telemetry) as client:
            with pytest.raises(InternalServerError):  # both failed alike: that kind
                await client.chat.completions.create(model="m", messages="hi")
    attributes = dict(recorded.call_span().attributes or {})
    assert attributes["error.type"] == "InternalServerError"
    assert attributes["asyncprov.provider"] == "last"
    assert attributes["server.port"] == _port(last)
    [duration] = recorded.points("gen_ai.client.operation.duration")
    said = dict(duration.attributes)
    assert said["error.type"] == "InternalServerError"
    assert said["gen_ai.provider.name"] == "openaicompatible"
    assert said["server.port"] == _port(last)


def test_a_provider_named_in_the_environment_is_used() -> None:
    """``OTEL_PYTHON_TRACER_PROVIDER`` (as ``opentelemetry-instrument`` sets up) is
    honoured: the API loads the named provider and the call is instrumented."""
    code = textwrap.dedent(_CALL) + textwrap.dedent("""
        from opentelemetry import trace
        print(type(trace.get_tracer_provider()).__name__)
    """)
    said = _run(code, OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider")
    modules, provider = said.strip().splitlines()
    assert "asyncprov._otel" in modules
    assert provider == "TracerProvider"


async def test_the_gateway_makes_the_same_spans(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """A request through the gateway is one call span (with its attempt), named after
    the model the gateway asked for, whether streamed or not."""
    import aiohttp

    from asyncprov.server import create_app
    from tests.helpers import start_app

    server.add_reply("one", "two")
    async with AsyncClient(
        base_url=server.base_url, max_retries=0, telemetry=recorded.telemetry
    ) as client:
        runner, url = await start_app(create_app(client))
        try:
            async with aiohttp.ClientSession() as http:
                for stream in (False, True):
                    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                    async with http.post(
                        url + "/chat/completions", json={**body, "stream": stream}
                    ) as response:
                        assert response.status == 200
                        await response.read()
        finally:
            await runner.cleanup()
    calls = [s for s in recorded.finished() if s.name == "chat m"]
    assert len(calls) == 2
    outcomes = {dict(s.attributes or {}).get("asyncprov.stream.outcome") for s in calls}
    assert outcomes == {None, "completed"}  # the whole reply, and the stream read to its end
    attempts = [s for s in recorded.finished() if s.name == "attempt OpenAICompatible"]
    assert len(attempts) == 2


async def test_the_wait_before_a_retry_is_on_its_record_and_span(
    server: OpenAITestServer, recorded: Recorded
) -> None:
    """A retry after ``retry-after-ms: 50`` says it waited 0.05 s and started after it."""
    server.add_reply(Reply(status=503, headers={"retry-after-ms": "50"}), "ok")
    async with AsyncClient(
        base_url=server.base_url, max_retries=1, telemetry=recorded.telemetry
    ) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
    first, second = completion.attempts
    assert (first.reason, first.waited, second.reason, second.waited) == (
        "first",
        0.0,
        "retry",
        0.05,
    )
    assert second.started_at - first.started_at >= first.seconds + 0.049  # two clocks
    [span] = [
        s
        for s in recorded.finished()
        if dict(s.attributes or {}).get("asyncprov.attempt.number") == 2
    ]
    assert dict(span.attributes or {})["asyncprov.attempt.waited"] == 0.05
