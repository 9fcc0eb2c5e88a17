"""client.chat.completions.batch: ordering, bounded concurrency and intake, errors as
results, progress, stopping and cancelling."""

from __future__ import annotations

import gc
import weakref
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from asyncprov import (
    AsyncClient,
    BadRequestError,
    BatchProgress,
    BatchResult,
    ConfigurationError,
    InvalidRequestError,
)
from asyncprov._http import HttpCall
from asyncprov._types import ChatCompletionChunk, ChatRequest, ChunkChoice, Delta, Usage
from asyncprov.providers import Provider
from asyncprov.testing import OpenAITestServer, Reply, instant_retries


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with instant_retries():
        yield


class Gated(Provider):
    """Answers each request with its own text once the test opens that text's gate."""

    name = "Gated"
    default_model = "g"
    base_url = "http://127.0.0.1:9"

    def __init__(self, *, open_texts: set[str] | None = None) -> None:
        super().__init__()
        self.gates: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self.open_texts = open_texts or set()
        self.started: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.changed = anyio.Event()

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        text = request.messages[-1].text()
        self.started.append(text)
        self.in_flight += 1
        self.changed.set()
        try:
            if text not in self.open_texts:
                await self.gates[text].wait()
        finally:
            self.in_flight -= 1
        self.finished.append(text)
        yield ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(content=text))])
        yield ChatCompletionChunk(
            choices=[ChunkChoice(finish_reason="stop")],
            usage=Usage(prompt_tokens=2, completion_tokens=1, total_tokens=3),
        )

    async def wait_started(self, count: int) -> None:
        while len(self.started) < count:
            self.changed = anyio.Event()
            await self.changed.wait()


def requests_for(*texts: str) -> list[dict[str, Any]]:
    return [{"custom_id": t, "messages": t} for t in texts]


async def collect(batch: Any) -> list[BatchResult]:
    async with batch as results:
        return [r async for r in results]


async def test_results_come_as_they_finish_by_default() -> None:
    """Without ordered=True each result is yielded as soon as its request finishes."""
    provider = Gated()
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for("a", "b", "c"))
        async with batch as results:
            await provider.wait_started(3)
            seen = []
            for text in ("c", "b", "a"):
                provider.gates[text].set()
                seen.append((await results.__anext__()).custom_id)
            assert [r async for r in results] == []
    assert seen == ["c", "b", "a"]


async def test_ordered_yields_input_order() -> None:
    """With ordered=True results come in input order whatever order they finish in."""
    provider = Gated()
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for("a", "b", "c"), ordered=True)
        async with batch as results:
            await provider.wait_started(3)
            for text in ("c", "b", "a"):
                provider.gates[text].set()
            seen = [(r.custom_id, r.index) async for r in results]
    assert seen == [("a", 0), ("b", 1), ("c", 2)]
    assert provider.finished == ["c", "b", "a"]


async def test_ordered_waits_for_the_head_of_the_line() -> None:
    """With ordered=True nothing is yielded while the first request is still out."""
    provider = Gated(open_texts={"b", "c"})
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for("a", "b", "c"), ordered=True)
        async with batch as results:
            await provider.wait_started(3)
            await anyio.wait_all_tasks_blocked()
            assert provider.finished == ["b", "c"] and batch.progress.done == 2
            provider.gates["a"].set()
            assert [r.custom_id async for r in results] == ["a", "b", "c"]


async def test_a_worker_keeps_no_finished_result_alive() -> None:
    """Once a result is handed on, its worker holds no reference to it: while the worker's
    next request is in flight, a result the caller dropped is freed."""
    provider = Gated(open_texts={"a"})
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for("a", "b"), concurrency=1)
        async with batch as results:
            first = await results.__anext__()
            assert first.completion is not None
            completion = weakref.ref(first.completion)
            del first
            await provider.wait_started(2)
            gc.collect()
            assert completion() is None
            provider.gates["b"].set()
            assert [r.custom_id async for r in results] == ["b"]


async def test_concurrency_is_bounded_on_the_server(server: OpenAITestServer) -> None:
    """The server never sees more than `concurrency` requests at once, and all are answered."""
    server.default = Reply(delay=0.02)
    async with AsyncClient(base_url=server.base_url) as client:
        batch = client.chat.completions.batch(
            ({"custom_id": f"r{i}", "messages": f"m{i}"} for i in range(30)),
            model="m",
            concurrency=5,
        )
        results = await collect(batch)
    assert server.max_in_flight == 5
    assert sorted(r.custom_id or "" for r in results) == sorted(f"r{i}" for i in range(30))
    by_id = {r.custom_id: r for r in results}
    completion = by_id["r7"].completion
    assert completion is not None and completion.choices[0].message.content == "You said: m7"
    assert by_id["r7"].index == 7 and by_id["r7"].provider == "OpenAICompatible"
    assert by_id["r7"].latency > 0 and by_id["r7"].attempts[0].ok


@pytest.mark.parametrize("ordered", [False, True])
async def test_intake_pulls_only_as_slots_free(ordered: bool) -> None:
    """The input is read only as far as the slots (plus the reorder buffer) allow."""
    provider = Gated(open_texts=set() if not ordered else {f"t{i}" for i in range(1, 100)})
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield {"custom_id": str(i), "messages": f"t{i}"}

    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(source(), concurrency=3, ordered=ordered)
        async with batch as results:
            await provider.wait_started(3)
            await anyio.wait_all_tasks_blocked()
            # Unordered: three in flight. Ordered: t0 holds the line, three more wait.
            assert pulled == (6 if ordered else 3)
            assert batch.progress.in_flight == (1 if ordered else 3)
            for i in range(100):
                provider.gates[f"t{i}"].set()
            count = 0
            async for _ in results:
                count += 1
                for i in range(100):
                    provider.gates[f"t{i}"].set()
    assert count == 100 and pulled == 100


async def test_errors_are_results(server: OpenAITestServer) -> None:
    """Failures become typed results and never stop the batch."""
    server.add_reply(Reply(status=400), "fine", Reply(status=401))
    requests: list[Any] = [
        {"custom_id": "bad", "messages": "x"},
        {"custom_id": "ok", "messages": "y"},
        {"custom_id": "auth", "messages": "z"},
        {"custom_id": "no-messages"},
        ["not", "a", "dict"],
        {"custom_id": "streamed", "messages": "s", "stream": True},
    ]
    async with AsyncClient(base_url=server.base_url) as client:
        batch = client.chat.completions.batch(requests, model="m", concurrency=1, ordered=True)
        results = await collect(batch)
    assert [r.custom_id for r in results] == [
        "bad", "ok", "auth", "no-messages", None, "streamed"
    ]  # fmt: skip
    bad, ok, auth, missing, not_dict, streamed = results
    assert isinstance(bad.error, BadRequestError) and bad.status == 400
    assert bad.error_type == "BadRequestError" and bad.completion is None and not bad.ok
    assert bad.provider == "OpenAICompatible" and bad.attempts[0].ok is False
    assert ok.ok and ok.completion is not None and ok.error is None
    assert auth.error_type == "AuthenticationError" and auth.status == 401
    for result in (missing, not_dict, streamed):
        assert isinstance(result.error, InvalidRequestError) and result.status is None
    assert "messages is required" in (missing.error_message or "")
    assert "error" not in bad.model_dump()  # the exception object is never serialized
    assert batch.progress.done == 1 and batch.progress.failed == 5
    assert len(server.requests) == 3


async def test_progress_callback_and_async_input() -> None:
    """The progress callback sees every result; an async iterable input works too."""
    provider = Gated(open_texts={"a", "b", "c", "d"})
    snapshots: list[BatchProgress] = []

    async def source() -> AsyncIterator[dict[str, Any]]:
        for request in requests_for("a", "b", "c", "d"):
            yield request

    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(source(), progress=snapshots.append)
        results = await collect(batch)
    assert sorted(r.custom_id or "" for r in results) == ["a", "b", "c", "d"]
    assert [s.finished for s in snapshots] == [1, 2, 3, 4]
    last = snapshots[-1]
    assert (last.done, last.failed, last.in_flight) == (4, 0, 0)
    assert (last.prompt_tokens, last.completion_tokens, last.total_tokens) == (8, 4, 12)
    assert results[0].usage is not None and results[0].usage.total_tokens == 3


async def test_stop_finishes_in_flight_and_takes_no_more() -> None:
    """stop() lets the requests in flight finish (and be yielded) and reads no more input."""
    provider = Gated()
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for(*"abcdefgh"), concurrency=2)
        async with batch as results:
            await provider.wait_started(2)
            batch.stop()
            provider.gates["a"].set()
            provider.gates["b"].set()
            got = [r.custom_id async for r in results]
    assert sorted(got) == ["a", "b"] and provider.started == ["a", "b"]
    assert not batch.cancelled


async def test_cancel_and_early_exit_drop_in_flight_requests() -> None:
    """cancel() ends iteration at once; leaving the block early cancels what is left."""
    provider = Gated(open_texts={"a"})
    async with AsyncClient(provider) as client:
        batch = client.chat.completions.batch(requests_for("a", "b", "c"))
        async with batch as results:
            first = await results.__anext__()
            await provider.wait_started(3)
            batch.cancel()
            assert [r async for r in results] == []
        assert first.custom_id == "a" and batch.cancelled
        assert provider.finished == ["a"]

        batch = client.chat.completions.batch(requests_for("a", "x", "y"))
        async with batch as results:
            async for result in results:
                assert result.custom_id == "a"
                break
        assert batch.cancelled and provider.in_flight == 0


async def test_failing_input_ends_the_batch_after_in_flight() -> None:
    """An exception from the input stops intake; it is raised once the in-flight finish."""
    provider = Gated(open_texts={"a", "b"})

    def source() -> Iterator[dict[str, Any]]:
        yield from requests_for("a", "b")
        raise OSError("disk gone")

    async with AsyncClient(provider) as client:
        got: list[str | None] = []
        with pytest.raises(OSError, match="disk gone"):
            async with client.chat.completions.batch(source()) as results:
                async for result in results:
                    got.append(result.custom_id)
    assert sorted(got) == ["a", "b"]


async def test_misuse_is_a_configuration_error() -> None:
    """Iterating without `async with`, a bad concurrency, or running twice is refused."""
    async with AsyncClient(Gated()) as client:
        batch = client.chat.completions.batch([])
        with pytest.raises(ConfigurationError, match="async with"):
            await batch.__anext__()
        with pytest.raises(ConfigurationError, match="concurrency"):
            client.chat.completions.batch([], concurrency=0)
        assert await collect(batch) == []
        with pytest.raises(ConfigurationError, match="runs once"):
            await collect(batch)


def test_sync_client_batch() -> None:
    """Client.chat.completions.batch is a plain iterator, run on the client's loop."""
    from asyncprov import Client

    server = OpenAITestServer()
    with server.run_in_thread(), Client(base_url=server.base_url) as client:
        results = list(
            client.chat.completions.batch(requests_for("a", "b", "c"), model="m", ordered=True)
        )
        assert [r.custom_id for r in results] == ["a", "b", "c"]
        assert results[1].completion is not None
        assert results[1].completion.choices[0].message.content == "You said: b"

        server.default = Reply(delay=5)
        with client.chat.completions.batch(requests_for("x", "y"), model="m") as slow:
            assert slow.progress.in_flight == 0
        assert not slow.cancelled  # never started: nothing was sent
        slow = client.chat.completions.batch(requests_for("x", "y"), model="m", concurrency=1)
        server.default = Reply()
        first = next(slow)
        server.default = Reply(delay=5)
        assert first.ok
        slow.close()
        with pytest.raises(StopIteration):
            next(slow)


async def test_a_short_input_starts_few_workers(client: AsyncClient) -> None:
    """Workers start as requests are taken: three requests at concurrency 100,000 run at
    once without starting 100,000 tasks."""
    batch = client.chat.completions.batch(
        [{"model": "m", "messages": f"n{i}"} for i in range(3)], concurrency=100_000
    )
    async with batch as results:
        assert sorted([r.completion.choices[0].message.content async for r in results]) == [  # type: ignore[union-attr]
            "You said: n0",
            "You said: n1",
            "You said: n2",
        ]
    assert batch._workers <= 4


async def test_custom_ids_must_be_strings(client: AsyncClient) -> None:
    """Numbers are taken as their text; any other custom_id is that request's error."""
    requests = [
        {"model": "m", "messages": "a", "custom_id": 7},
        {"model": "m", "messages": "b", "custom_id": {"nested": 1}},
    ]
    async with client.chat.completions.batch(requests, ordered=True) as results:
        first, second = [r async for r in results]
    assert first.ok and first.custom_id == "7"
    assert not second.ok and second.error_type == "InvalidRequestError"
    assert "custom_id must be a string" in (second.error_message or "")


async def test_an_async_generator_input_is_closed_when_the_batch_ends(
    client: AsyncClient,
) -> None:
    closed = anyio.Event()

    async def requests() -> AsyncGenerator[dict[str, Any], None]:
        try:
            for i in range(1000):
                yield {"model": "m", "messages": f"n{i}"}
        finally:
            closed.set()

    async with client.chat.completions.batch(requests(), concurrency=2) as results:
        async for _ in results:
            break  # leave early: the rest of the input is never read
    assert closed.is_set()
