"""What a fresh interpreter imports for the commonest work: non-streamed calls and a
batch on the OpenAI wire load nothing they never use (each module costs memory in every
process, batch workers included)."""

from __future__ import annotations

import sys
import textwrap

import anyio

from asyncprov.testing import OpenAITestServer

_CALLS = textwrap.dedent(
    """
    import asyncio, sys
    from asyncprov import AsyncClient

    async def main(url):
        async with AsyncClient(base_url=url, max_retries=0) as client:
            await client.chat.completions.create(model="m", messages="hi")
            batch = client.chat.completions.batch([{"model": "m", "messages": "hi"}] * 3)
            async with batch as results:
                assert [r.ok async for r in results] == [True] * 3

    asyncio.run(main(sys.argv[1]))
    print("\\n".join(sorted(sys.modules)))
    """
)

# Loaded only by what needs them: an unknown name's suggestions, other wire formats,
# telemetry, rate limits, shared state, the sync facade, the command line and gateway.
_NOT_LOADED = (
    "difflib",
    "asyncprov.providers.anthropic",
    "asyncprov.providers.gemini",
    "asyncprov.providers.raycast",
    "asyncprov.providers._mapping",
    "asyncprov.providers._splice",
    "asyncprov._otel",
    "opentelemetry",
    "asyncprov._ratelimit",
    "asyncprov._limited_send",
    "asyncprov._shared",
    "asyncprov._shared_limits",
    "asyncprov._shared_store",
    "redis",
    "ray",
    "asyncprov._sync",
    "asyncprov._sync_batch",
    "asyncprov._loop_thread",
    "asyncprov._tokens",
    "asyncprov._genai",
    "asyncprov.cli",
    "asyncprov.server",
    "asyncprov.testing",
)


async def test_non_streamed_calls_and_a_batch_load_only_what_they_use(
    server: OpenAITestServer,
) -> None:
    """A non-streamed call and a batch through the OpenAI wire import none of the
    modules they never use."""
    done = await anyio.run_process([sys.executable, "-c", _CALLS, server.base_url])
    loaded = set(done.stdout.decode().split())
    assert "asyncprov._batch" in loaded
    assert sorted(loaded.intersection(_NOT_LOADED)) == []
