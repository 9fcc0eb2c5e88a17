"""The clients being compared, each doing exactly the same work per request.

- ``floor``: hand-written aiohttp + its own small pydantic models (``floor_models``), the
  cost any aiohttp-based client pays; it shares no code with asyncprov.
- ``floor_lines``: the same, reading the body line by line (streaming scenarios only).
- ``openai``: openai-python's ``AsyncOpenAI`` (httpx underneath).
- ``asyncprov``: ``asyncprov.AsyncClient``.
- ``asyncprov_sync``: ``asyncprov.Client``, the sync facade (streaming only).

The ``batch`` scenario compares ``client.chat.completions.batch`` with a hand-written
aiohttp + anyio loop (``floor_batch``) over the same lazily made input.

Every stream is read to its end and every chunk becomes a pydantic model; the text of
choice 0 is collected the same way for all of them (``_Collector``), so the worker can
check what arrived. Each library is imported only by its own client, so a worker's
memory and CPU figures contain nothing of the others.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .common import MESSAGES

__all__ = [
    "ASYNC_CLIENTS",
    "BATCH_RUNNERS",
    "SYNC_CLIENTS",
    "StreamResult",
    "batch_requests",
    "make_async_client",
]


@dataclass
class StreamResult:
    """What one stream delivered."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    t_first: float | None = None
    """``time.perf_counter()`` when the first content chunk reached the caller."""
    provider: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _Collector:
    """Folds chunk objects (anything shaped like ``ChatCompletionChunk``) into a result."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result = StreamResult()

    def add(self, chunk: Any) -> None:
        choices = chunk.choices
        if not choices:
            return
        choice = choices[0]
        content = choice.delta.content
        if content:
            result = self.result
            if result.t_first is None:
                result.t_first = time.perf_counter()
            result.parts.append(content)
        if choice.finish_reason:
            self.result.finish_reason = choice.finish_reason


def floor_models() -> tuple[Any, Any]:
    """The floor's own pydantic models, of the fields a caller reads (``choices[0]``'s
    delta or message content and finish reason): what a hand-written client defines,
    sharing no code with asyncprov. Built on first use, in the floor's worker only."""
    from pydantic import BaseModel

    class Delta(BaseModel):
        content: str | None = None

    class ChunkChoice(BaseModel):
        delta: Delta
        finish_reason: str | None = None

    class Chunk(BaseModel):
        choices: list[ChunkChoice]

    class Message(BaseModel):
        content: str | None = None

    class Choice(BaseModel):
        message: Message
        finish_reason: str | None = None

    class Completion(BaseModel):
        choices: list[Choice]

    return Chunk, Completion


class FloorClient:
    """Raw aiohttp + pydantic: POST, split the body into SSE events, validate each.

    What a competent engineer writes by hand: one session with a pool of 1,000
    connections, the body read as it arrives (``iter_any``) and split on blank lines,
    its own small model's ``model_validate_json`` on each ``data:`` payload
    (``floor_models``), and the body read to its end so the connection goes back to
    the pool.
    """

    name = "floor"

    def __init__(self, base_url: str) -> None:
        import aiohttp

        self._chunk_type, self._completion_type = floor_models()
        self._url = base_url + "/chat/completions"
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    async def stream(self, model: str) -> StreamResult:
        validate = self._chunk_type.model_validate_json
        collector = _Collector()
        add = collector.add
        body = {"model": model, "messages": MESSAGES, "stream": True}
        async with self._session.post(self._url, json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
            buffer = b""
            done = False
            async for data in resp.content.iter_any():
                if done:
                    continue  # read to the end so the connection can be reused
                events = (buffer + data).split(b"\n\n") if buffer else data.split(b"\n\n")
                buffer = events.pop()
                for event in events:
                    for line in event.split(b"\n") if b"\n" in event else (event,):
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].lstrip()
                        if payload == b"[DONE]":
                            done = True
                            break
                        add(validate(payload))
                    if done:
                        break
            if not done:
                raise RuntimeError("the stream ended without [DONE]")
        return collector.result

    async def complete(self, model: str) -> str:
        body = {"model": model, "messages": MESSAGES}
        async with self._session.post(self._url, json=body) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        completion = self._completion_type.model_validate_json(data)
        return completion.choices[0].message.content or ""

    async def aclose(self) -> None:
        await self._session.close()


class FloorLinesClient(FloorClient):
    """The floor written the other common way: ``async for line in resp.content``.

    Same session and validation as ``floor``, but aiohttp splits the body into lines
    (``StreamReader.readline``) and each ``data:`` line is one chunk. Many hand-written
    clients look like this; it costs more per chunk than splitting what ``iter_any``
    returns, so it is reported next to the floor, not as the floor.
    """

    name = "floor_lines"

    async def stream(self, model: str) -> StreamResult:
        validate = self._chunk_type.model_validate_json
        collector = _Collector()
        add = collector.add
        body = {"model": model, "messages": MESSAGES, "stream": True}
        async with self._session.post(self._url, json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
            done = False
            async for line in resp.content:
                if done or not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                else:
                    add(validate(payload))
            if not done:
                raise RuntimeError("the stream ended without [DONE]")
        return collector.result


class _OpenAIShaped:
    """The calls openai-python and asyncprov share, made the same way for both."""

    _client: Any

    async def stream(self, model: str) -> StreamResult:
        collector = _Collector()
        add = collector.add
        stream = await self._client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        )
        async with stream:
            async for chunk in stream:
                add(chunk)
        collector.result.provider = getattr(stream, "provider", None)  # asyncprov's only
        return collector.result

    async def complete(self, model: str) -> str:
        completion = await self._client.chat.completions.create(model=model, messages=MESSAGES)
        return completion.choices[0].message.content or ""


class OpenAIClient(_OpenAIShaped):
    """openai-python: ``AsyncOpenAI(max_retries=0)`` over an httpx pool of 1,000
    connections (openai's default limits)."""

    name = "openai"

    def __init__(self, base_url: str) -> None:
        import openai

        try:
            import httpx2 as httpx  # openai 3 runs on httpx2
        except ImportError:  # pragma: no cover - older openai
            import httpx  # type: ignore[import-not-found,no-redef,unused-ignore]

        # openai's own default limits, spelled out so the 1,000-connection pool is
        # certain. Keeping all 1,000 alive (max_keepalive_connections=1000) made
        # openai ~40% slower on conc_1000 here, so its default is the fair choice.
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        http_client = openai.DefaultAsyncHttpxClient(limits=limits)
        self._client: Any = openai.AsyncOpenAI(
            base_url=base_url, api_key="x", max_retries=0, http_client=http_client
        )

    async def aclose(self) -> None:
        await self._client.close()


class AsyncprovClient(_OpenAIShaped):
    """``asyncprov.AsyncClient(base_url=...)`` with its defaults."""

    name = "asyncprov"

    def __init__(self, base_url: str) -> None:
        import asyncprov

        self._client = asyncprov.AsyncClient(base_url=base_url)

    async def aclose(self) -> None:
        await self._client.aclose()


class AsyncprovSyncClient:
    """``asyncprov.Client(base_url=...)``: the sync facade, used from plain code."""

    name = "asyncprov_sync"

    def __init__(self, base_url: str) -> None:
        import asyncprov

        self._client = asyncprov.Client(base_url=base_url)

    def stream(self, model: str) -> StreamResult:
        collector = _Collector()
        add = collector.add
        with self._client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        ) as stream:
            for chunk in stream:
                add(chunk)
        return collector.result

    def complete(self, model: str) -> str:
        completion = self._client.chat.completions.create(model=model, messages=MESSAGES)
        return completion.choices[0].message.content or ""

    def close(self) -> None:
        self._client.close()


ASYNC_CLIENTS: dict[str, type[FloorClient | OpenAIClient | AsyncprovClient]] = {
    "floor": FloorClient,
    "floor_lines": FloorLinesClient,
    "openai": OpenAIClient,
    "asyncprov": AsyncprovClient,
}
SYNC_CLIENTS = {"asyncprov_sync": AsyncprovSyncClient}


def make_async_client(name: str, base_url: str) -> FloorClient | OpenAIClient | AsyncprovClient:
    """A client of the given kind; call inside a running event loop."""
    return ASYNC_CLIENTS[name](base_url)


async def failover_ttft(
    ok_url: str, stall_url: str, *, hedged: bool, hedge_delay: float, first_chunk: float
) -> StreamResult:
    """One stream through ``RetryProvider([stalled primary, healthy secondary])``.

    Hedged: the secondary starts when the primary has shown nothing for
    ``hedge_delay``. Sequential: the primary's attempt ends with its
    ``first_chunk`` timeout, then the secondary is tried. A fresh client each time, so
    the primary's failures from one measurement never put it in cool-down for the next.
    """
    from asyncprov import AsyncClient, Timeout
    from asyncprov.providers import OpenAICompatible, RetryProvider

    group = RetryProvider(
        [
            OpenAICompatible(base_url=stall_url, name="primary"),
            OpenAICompatible(base_url=ok_url, name="secondary"),
        ],
        shuffle=False,
        hedge=hedged,
        hedge_delay=hedge_delay,
    )
    timeout = Timeout(first_chunk=first_chunk, total=30)
    async with AsyncClient(group, timeout=timeout) as client:
        collector = _Collector()
        stream = await client.chat.completions.create(
            model="stream-50", messages=MESSAGES, stream=True
        )
        async with stream:
            async for chunk in stream:
                collector.add(chunk)
        collector.result.provider = stream.provider
        return collector.result


def batch_requests(count: int) -> Iterator[dict[str, Any]]:
    """The batch scenario's input: ``count`` requests, made one at a time as asked for."""
    for index in range(count):
        yield {"custom_id": f"req-{index}", "model": "json", "messages": MESSAGES}


async def _post_one(
    session: Any, url: str, body: dict[str, Any], validate: Any, on_text: Any
) -> None:
    """One hand-written batch request: post, validate, and keep any failure as the result."""
    try:
        async with session.post(url, json=body) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
        on_text(body["custom_id"], validate(data).choices[0].message.content)
    except Exception as exc:  # a batch keeps going: the failure is the result
        on_text(body["custom_id"], exc)


async def floor_batch(
    base_url: str, requests: Iterator[dict[str, Any]], concurrency: int, on_text: Any
) -> None:
    """The hand-written batch loop: aiohttp + anyio, a ``CapacityLimiter`` bounding the
    requests in flight, the input pulled only as slots free up, each body validated by the
    floor's own model and every failure kept as a result (never raised)."""
    import aiohttp
    import anyio

    validate = floor_models()[1].model_validate_json
    url = base_url + "/chat/completions"
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(session: aiohttp.ClientSession, body: dict[str, Any], token: object) -> None:
        try:
            await _post_one(session, url, body, validate, on_text)
        finally:
            limiter.release_on_behalf_of(token)

    connector = aiohttp.TCPConnector(limit=1000)
    session = aiohttp.ClientSession(connector=connector)
    async with session, anyio.create_task_group() as group:
        for body in requests:
            token = object()
            await limiter.acquire_on_behalf_of(token)
            group.start_soon(one, session, body, token)


async def asyncprov_batch(
    base_url: str, requests: Iterator[dict[str, Any]], concurrency: int, on_text: Any
) -> None:
    """``client.chat.completions.batch(...)`` over the same input."""
    import asyncprov

    async with asyncprov.AsyncClient(base_url=base_url) as client:
        batch = client.chat.completions.batch(requests, concurrency=concurrency)
        async with batch as results:
            async for result in results:
                if result.completion is not None:
                    on_text(result.custom_id, result.completion.choices[0].message.content)
                else:
                    on_text(result.custom_id, result.error)


async def floor_pool_batch(
    base_url: str, requests: Iterator[dict[str, Any]], concurrency: int, on_text: Any
) -> None:
    """The cheapest hand-written shape: ``concurrency`` worker tasks sharing one input
    iterator (no task and no limiter per request), otherwise as ``floor_batch``."""
    import aiohttp
    import anyio

    validate = floor_models()[1].model_validate_json
    url = base_url + "/chat/completions"

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in requests:
            await _post_one(session, url, body, validate, on_text)

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    async with session, anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker, session)


BATCH_RUNNERS = {
    "floor": floor_batch,
    "floor_pool": floor_pool_batch,
    "asyncprov": asyncprov_batch,
}
