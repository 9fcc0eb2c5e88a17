"""The sync Client: same API as AsyncClient, one loop thread, usable anywhere."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asyncprov import (
    AsyncClient,
    ChatCompletion,
    Client,
    ClientClosedError,
    Stream,
    StreamInterruptedError,
)
from asyncprov._client import AsyncCompletions
from asyncprov._streaming import AsyncStream
from asyncprov._sync import Completions
from asyncprov.providers import OpenAICompatible
from asyncprov.testing import OpenAITestServer, Reply


@pytest.fixture
def threaded_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer()
    with server.run_in_thread():
        yield server


@pytest.fixture
def sync_client(threaded_server: OpenAITestServer) -> Iterator[Client]:
    with Client(base_url=threaded_server.base_url, max_retries=0) as client:
        yield client


def _text(chunks: list) -> str:  # type: ignore[type-arg]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_sync_stream_and_non_stream(sync_client: Client, threaded_server: OpenAITestServer) -> None:
    """create(stream=True) is a plain iterator of chunks; the default returns a ChatCompletion."""
    threaded_server.add_reply(Reply(content="alpha beta gamma"))
    stream = sync_client.chat.completions.create(model="m", messages="hi", stream=True)
    assert isinstance(stream, Stream)
    chunks = list(stream)
    assert _text(chunks) == "alpha beta gamma"
    assert {c.provider for c in chunks} == {"OpenAICompatible"}
    reply = sync_client.chat.completions.create(model="m", messages="hello")
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "You said: hello"


def test_sync_long_stream_is_complete(
    sync_client: Client, threaded_server: OpenAITestServer
) -> None:
    """A stream far longer than the hand-over buffer arrives complete and in order."""
    words = [f"w{i} " for i in range(3000)]
    threaded_server.add_reply(Reply(content="".join(words)))
    with sync_client.chat.completions.create(model="m", messages="hi", stream=True) as stream:
        chunks = list(stream)
    assert _text(chunks) == "".join(words)


async def test_sync_client_inside_running_loop(threaded_server: OpenAITestServer) -> None:
    """Called from code that already runs an event loop (as in Jupyter), the sync client works."""
    with Client(base_url=threaded_server.base_url) as client:
        reply = client.chat.completions.create(model="m", messages="in a loop")
        chunks = list(client.chat.completions.create(model="m", messages="x", stream=True))
    assert reply.choices[0].message.content == "You said: in a loop"
    assert _text(chunks) == "You said: x"


def test_sync_client_from_many_threads(sync_client: Client) -> None:
    """One Client serves calls from several threads at once."""

    def call(i: int) -> str:
        if i % 2:
            return (
                sync_client.chat.completions.create(model="m", messages=f"n{i}")
                .choices[0]
                .message.content
                or ""
            )
        return _text(
            list(sync_client.chat.completions.create(model="m", messages=f"n{i}", stream=True))
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(24)))
    assert results == [f"You said: n{i}" for i in range(24)]


def test_sync_break_closes_connection(
    sync_client: Client, threaded_server: OpenAITestServer
) -> None:
    """Leaving a sync stream early (with / close) drops the connection; the server sees it."""
    threaded_server.add_reply(Reply(content="tick " * 300, chunk_delay=0.01))
    disconnected = threading.Event()
    with sync_client.chat.completions.create(model="m", messages="hi", stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    for _ in range(500):
        if threaded_server.disconnects:
            disconnected.set()
            break
        disconnected.wait(0.01)
    assert disconnected.is_set()
    with pytest.raises(StopIteration):
        next(stream)


def test_sync_errors_propagate_typed(
    sync_client: Client, threaded_server: OpenAITestServer
) -> None:
    """Errors raised in the loop thread reach the caller as the same typed exceptions."""
    from asyncprov import RateLimitError, StreamInterruptedError

    threaded_server.add_reply(Reply(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimitError) as caught:
        sync_client.chat.completions.create(model="m", messages="hi")
    assert caught.value.retry_after == 3.0
    threaded_server.add_reply(Reply(content="a b c d", fault="truncate", fault_after=2))
    received = ""
    with pytest.raises(StreamInterruptedError) as interrupted:
        for chunk in sync_client.chat.completions.create(model="m", messages="hi", stream=True):
            received += chunk.choices[0].delta.content or ""
    assert interrupted.value.partial_text == received == "a b "


def test_closed_client_refuses_calls(threaded_server: OpenAITestServer) -> None:
    """After close() the client raises ClientClosedError; close() twice is fine."""
    client = Client(base_url=threaded_server.base_url)
    client.chat.completions.create(model="m", messages="hi")
    client.close()
    client.close()
    with pytest.raises(ClientClosedError):
        client.chat.completions.create(model="m", messages="hi")


def test_sync_collect(sync_client: Client) -> None:
    """Stream.collect() folds a sync stream into one completion."""
    completion = sync_client.chat.completions.create(
        model="m", messages="fold", stream=True
    ).collect()
    assert completion.choices[0].message.content == "You said: fold"


def test_provider_create_completion_shim(threaded_server: OpenAITestServer) -> None:
    """Provider.create_completion yields plain str tokens, streamed or whole."""
    provider = OpenAICompatible(base_url=threaded_server.base_url)
    tokens = list(
        provider.create_completion(model="m", messages=[{"role": "user", "content": "a b"}])
    )
    assert all(isinstance(t, str) for t in tokens) and "".join(tokens) == "You said: a b"
    whole = list(provider.create_completion(model="m", messages="c", stream=False))
    assert whole == ["You said: c"]


async def test_provider_async_generator_shim(server: OpenAITestServer) -> None:
    """Provider.create_async_generator yields str tokens asynchronously."""
    provider = OpenAICompatible(base_url=server.base_url)
    tokens = [t async for t in provider.create_async_generator(model="m", messages="x y")]
    assert "".join(tokens) == "You said: x y" and len(tokens) > 1


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [(AsyncClient, Client), (AsyncCompletions, Completions), (AsyncStream, Stream)],
)
def test_sync_async_parity(async_cls: type, sync_cls: type) -> None:
    """Every public async method has a sync twin with the same parameters."""
    async_methods = _public_methods(async_cls)
    sync_methods = _public_methods(sync_cls)
    renamed = {"aclose": "close"}
    for name, signature in async_methods.items():
        twin = renamed.get(name, name)
        assert twin in sync_methods, f"{sync_cls.__name__} lacks {twin}()"
        assert list(signature.parameters) == list(sync_methods[twin].parameters), name


def test_client_constructors_match() -> None:
    """Client takes exactly AsyncClient's constructor arguments."""
    assert list(inspect.signature(Client).parameters) == list(
        inspect.signature(AsyncClient).parameters
    )


def test_close_client_under_a_reading_thread(threaded_server: OpenAITestServer) -> None:
    """Closing a Client while another thread iterates gives that thread ClientClosedError."""
    threaded_server.add_reply(Reply(content="tick " * 500, chunk_delay=0.005))
    client = Client(base_url=threaded_server.base_url)
    stream = client.chat.completions.create(model="m", messages="hi", stream=True)
    started = threading.Event()
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            for _ in stream:
                started.set()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=read)
    worker.start()
    assert started.wait(5)
    client.close()
    worker.join(5)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError | StreamInterruptedError)
    with pytest.raises((ClientClosedError, StopIteration)):
        next(stream)


def test_client_survives_fork(threaded_server: OpenAITestServer, tmp_path: Path) -> None:
    """A Client (and the provider shim) used before os.fork() works in the child; a
    batch made before the fork raises there instead of hanging."""
    script = tmp_path / "forked.py"
    script.write_text(
        "import os, signal, sys\n"
        "from asyncprov import Client\n"
        "from asyncprov.providers import OpenAICompatible\n"
        "url = sys.argv[1]\n"
        "c = Client(base_url=url)\n"
        "c.chat.completions.create(model='m', messages='parent')\n"
        "''.join(OpenAICompatible(base_url=url).create_completion(model='m', messages='p'))\n"
        "before = c.chat.completions.batch([{'model': 'm', 'messages': 'x'}])\n"
        "next(before)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    signal.alarm(10)\n"
        "    a = c.chat.completions.create(model='m', messages='child')\n"
        "    a = a.choices[0].message.content\n"
        "    p = OpenAICompatible(base_url=url)\n"
        "    b = ''.join(p.create_completion(model='m', messages='s'))\n"
        "    try:\n"
        "        next(before)\n"
        "    except Exception as e:\n"
        "        b += ' | ' + type(e).__name__\n"
        "    print(a, '|', b, flush=True)\n"
        "    c.close()\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "c.close()\n"
        "print('child status', status)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script), threaded_server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "You said: child | You said: s | ClientClosedError",  # a batch from before the fork
        "child status 0",
    ]


def test_stream_after_client_close_is_typed_not_a_hang(threaded_server: OpenAITestServer) -> None:
    """A stream whose client was closed before it was read raises, then ends: never hangs."""
    client = Client(base_url=threaded_server.base_url)
    stream = client.chat.completions.create(model="m", messages="hi", stream=True)
    client.close()
    with pytest.raises(ClientClosedError):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)


def test_sync_read_ahead_is_not_idle(threaded_server: OpenAITestServer) -> None:
    """Time the sync consumer spends on a batch does not count as idle, read-ahead or not."""
    from asyncprov import Timeout

    threaded_server.add_reply(Reply(content="a b c", chunk_delay=0.3))
    timeout = Timeout(first_chunk=5, idle=0.2)
    with Client(base_url=threaded_server.base_url, timeout=timeout) as client:
        received = ""
        for chunk in client.chat.completions.create(model="m", messages="hi", stream=True):
            received += chunk.choices[0].delta.content or ""
            threading.Event().wait(0.4)  # the consumer's own slow work
    assert received == "a b c"


def test_sync_reader_stays_within_two_batches(
    sync_client: Client, threaded_server: OpenAITestServer
) -> None:
    """The loop thread never reads more than two batches past what the consumer took
    (the rest of the consumer's batch, and one read while it works)."""
    from asyncprov._loop_thread import _BUFFER

    words = [f"w{i} " for i in range(20 * _BUFFER)]
    threaded_server.add_reply(Reply(content="".join(words)))
    given = 0
    with sync_client.chat.completions.create(model="m", messages="hi", stream=True) as stream:
        for chunk in stream:
            given += bool(chunk.choices and chunk.choices[0].delta.content)
            assert len(stream.text.split()) <= given + 2 * _BUFFER
    assert given == len(words)


def test_sync_error_after_many_batches_keeps_order(
    sync_client: Client, threaded_server: OpenAITestServer
) -> None:
    """A stream that breaks after several full batches delivers every chunk, then the error."""
    words = [f"w{i} " for i in range(1000)]
    threaded_server.add_reply(Reply(content="".join(words), fault="truncate", fault_after=300))
    received = ""
    with pytest.raises(StreamInterruptedError) as interrupted:
        for chunk in sync_client.chat.completions.create(model="m", messages="hi", stream=True):
            received += chunk.choices[0].delta.content or ""
    assert interrupted.value.partial_text == received == "".join(words[:300])
