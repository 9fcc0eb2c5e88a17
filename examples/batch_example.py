"""Batch jobs: run an OpenAI Batch API file through asyncprov, with no network and no key.

Starts asyncprov's local OpenAI-compatible test server on 127.0.0.1, reads
``examples/batch.jsonl`` line by line (the same format OpenAI's Batch API takes) and
runs its requests eight at a time under a rate limit, printing each result as it
arrives and the totals at the end. Run:

    python examples/batch_example.py

Against a real provider, the command line does the same with resume and a results file:

    asyncprov batch examples/batch.jsonl results.jsonl --provider OpenaiChat --rpm 500
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asyncprov import AsyncClient, BatchProgress, RateLimit
from asyncprov.testing import OpenAITestServer

REQUESTS = Path(__file__).resolve().parent / "batch.jsonl"


def read_requests(path: Path) -> Iterator[dict[str, Any]]:
    """One create() request per line: the line's body plus its custom_id (read lazily)."""
    with path.open() as lines:
        for line in lines:
            item = json.loads(line)
            yield {**item["body"], "custom_id": item["custom_id"]}


def show(progress: BatchProgress) -> None:
    """Called after every result: a place for your own progress display."""
    if progress.finished % 3 == 0:
        print(f"  ... {progress.finished} finished, {progress.in_flight} in flight")


async def main() -> None:
    limits = {"OpenAICompatible": RateLimit(rpm=600, concurrency=4)}
    async with (
        OpenAITestServer() as server,
        AsyncClient(base_url=server.base_url, rate_limits=limits) as client,
    ):
        batch = client.chat.completions.batch(
            read_requests(REQUESTS), concurrency=8, ordered=True, progress=show
        )
        async with batch as results:
            async for result in results:
                if result.completion is not None:
                    answer = result.completion.choices[0].message.content
                    print(f"{result.custom_id:<12} {result.provider}: {answer}")
                else:
                    print(f"{result.custom_id:<12} failed: {result.error_type}")
        totals = batch.progress
        print(f"done {totals.done}, failed {totals.failed}, tokens {totals.total_tokens}")


if __name__ == "__main__":
    asyncio.run(main())
