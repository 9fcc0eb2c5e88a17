"""Offline: the OpenTelemetry spans of a failover call, printed as a tree.

Two local OpenAI-compatible servers stand in for providers: "primary" answers 503,
"backup" answers. The client gets a tracer provider of its own (the global one is left
alone) whose spans go to an in-memory exporter, printed after the call.

Needs the OpenTelemetry SDK: pip install "asyncprov[otel]" opentelemetry-sdk
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncprov import AsyncClient, Telemetry
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply


async def main() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with OpenAITestServer() as primary, OpenAITestServer() as backup:
        primary.add_reply(Reply(status=503))
        backup.add_reply("Answered by the backup.")
        group = RetryProvider(
            [
                OpenAICompatible(base_url=primary.base_url, name="primary"),
                OpenAICompatible(base_url=backup.base_url, name="backup"),
            ],
            shuffle=False,
        )
        telemetry = Telemetry(tracer_provider=tracer_provider)
        async with AsyncClient(group, telemetry=telemetry) as client:
            reply = await client.chat.completions.create(model="m", messages="Hello")
    print(reply.choices[0].message.content)
    spans = exporter.get_finished_spans()
    call = next(s for s in spans if s.name.startswith("chat "))
    said = dict(call.attributes or {})
    print(
        f"{call.name}: answered by {said['asyncprov.provider']} "
        f"({said['gen_ai.provider.name']} at {said['server.address']}), "
        f"{said['asyncprov.attempts']} attempts, "
        f"tokens in/out {said['gen_ai.usage.input_tokens']}/{said['gen_ai.usage.output_tokens']}"
    )
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        if span is call:
            continue
        attempt = dict(span.attributes or {})
        error = f" {attempt['error.type']}" if "error.type" in attempt else ""
        print(
            f"  {span.name}: #{attempt['asyncprov.attempt.number']} "
            f"{attempt['asyncprov.attempt.reason']} -> "
            f"{attempt['asyncprov.attempt.outcome']}{error}"
        )


if __name__ == "__main__":
    asyncio.run(main())
