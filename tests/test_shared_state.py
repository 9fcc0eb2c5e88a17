"""Limits and provider health shared through a real Redis (``SharedState``): across
processes, with leases that outlive a killed process only briefly, and a decided
behaviour when Redis is down or slow."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asyncprov import (
    AsyncClient,
    ConfigurationError,
    InternalServerError,
    RateLimit,
    RateLimitError,
    SharedState,
    SharedStateError,
)
from asyncprov.providers import OpenAICompatible, Provider, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply

from .redis_server import RedisServer, most_in_one_second

NAME = "OpenAICompatible"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test, so tests sharing one Redis never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def server() -> AsyncIterator[OpenAITestServer]:
    async with OpenAITestServer() as srv:
        yield srv


SHARING = 2.0
"""The Redis timeout of the tests about sharing: a loaded machine must not make them
fall open (the tests about Redis failing set their own short ones)."""


def _named(base_url: str, name: str) -> Provider:
    provider = OpenAICompatible(base_url=base_url)
    provider.name = name
    return provider


async def _worker(*args: object) -> anyio.abc.Process:
    return await anyio.open_process(
        [sys.executable, "-m", "tests.shared_worker", *map(str, args)],
        cwd=ROOT,
        stderr=subprocess.STDOUT,
    )


async def test_four_processes_share_one_rate(
    server: OpenAITestServer, redis_url: str, namespace: str
) -> None:
    """4 processes x 250 requests under one shared 100 requests/s: no one-second window
    at the server sees more than the limit plus the burst (the budget holds one
    second's worth, 100, as in memory; +10 for jitter), none after the first second
    more than 100 (+20: a request reaches the server its grant plus its process's
    scheduling delay, which on a loaded two-core machine varies by up to ~0.2 s), and
    the 1,000 take the 9 s the budget allows."""
    with anyio.fail_after(60):
        workers = [
            await _worker("load", server.base_url, redis_url, namespace, 250, 25, 6000)
            for _ in range(4)
        ]
        for process in workers:
            assert await process.wait() == 0
            assert process.stdout is not None
            assert b"done" in await process.stdout.receive()
    times = sorted(r.at for r in server.requests)
    assert len(times) == 1000
    # The limit, plus the initial burst, plus 0.1 s worth for the first arrival's delay
    # (a new connection) that the window is measured from.
    assert most_in_one_second(times) <= 100 + 100 + 10
    steady = [t for t in times if t >= times[0] + 1.0]
    assert most_in_one_second(steady) <= 120
    assert 8.7 <= times[-1] - times[0] <= 10.5  # (1000 - 100 burst) / 100 per second


async def test_tpm_reservations_settle_by_reported_usage(
    server: OpenAITestServer, redis_url: str, namespace: str
) -> None:
    """tpm reserves each request's estimate before sending and settles it by the usage
    the reply reports, streamed or not: the counts match the reported usage exactly,
    the total stays within the budget, and settling lets far more through than the
    estimates alone would."""
    limits = {NAME: RateLimit(tpm=6000)}  # 100 tokens a second, a burst of 100
    shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
    clients = [
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared)
        for _ in range(2)
    ]
    used = [0, 0]

    async def send(index: int, number: int) -> None:
        client = clients[index]
        options = {"model": "m", "messages": "hello there", "max_tokens": 40}
        if number % 2:
            completion = await client.chat.completions.create(**options)  # type: ignore[call-overload]
            assert completion.usage is not None
            used[index] += completion.usage.total_tokens
        else:
            stream = await client.chat.completions.create(
                **options, stream=True, stream_options={"include_usage": True}
            )  # type: ignore[call-overload]
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        used[index] += chunk.usage.total_tokens

    started = anyio.current_time()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for number in range(40):
                tg.start_soon(send, number % 2, number // 2)
    elapsed = anyio.current_time() - started
    for client, tokens in zip(clients, used, strict=True):
        stats = client.rate_limits.stats(NAME)
        assert stats.requests == 20
        assert stats.tokens == tokens  # every reservation settled to the reported usage
        await client.aclose()
    estimate = 40 + len('{"model":"m","messages":[{"role":"user","content":"hello there"}]}') // 4
    assert sum(used) <= 100 + 100 * elapsed  # within the budget: burst plus the rate
    assert elapsed < (40 * estimate - 100) / 100 / 2  # settling freed what was unused


async def test_killed_process_slots_come_back_after_the_lease(
    redis_url: str, namespace: str
) -> None:
    """A process killed (SIGKILL) while holding both shared slots: the others get a
    slot once its leases expire (within the lease, 1 s), and then go on normally."""
    held = OpenAITestServer(default=Reply(delay=30))
    async with held, OpenAITestServer() as server:
        process = await _worker("hold", held.base_url, redis_url, namespace, 1.0)
        try:
            with anyio.fail_after(20):
                # The child's two requests reach the server (from another process: no
                # event to wait on here).
                while len(held.requests) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        killed = anyio.current_time()
        limits = {NAME: RateLimit(concurrency=2)}
        shared = SharedState(redis_url, namespace=namespace, timeout=SHARING, lease=1.0)
        async with AsyncClient(
            base_url=server.base_url, rate_limits=limits, shared_state=shared
        ) as client:
            with anyio.fail_after(5):
                await client.chat.completions.create(model="m", messages="hi")
            waited = anyio.current_time() - killed
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(lambda: client.chat.completions.create(model="m", messages="hi"))
    assert 0.3 <= waited <= 1.6  # blocked until the dead process's leases ran out
    assert len(server.requests) == 11
    assert server.max_in_flight <= 2


async def test_cool_down_is_seen_by_another_process(redis_url: str, namespace: str) -> None:
    """A 429 with Retry-After: 5 cools a provider down for every client on the Redis: a
    new process's first failover call skips it (and a new client in this one, too)."""
    async with (
        OpenAITestServer(default=Reply(status=429, headers={"Retry-After": "5"})) as limited,
        OpenAITestServer() as healthy,
    ):
        first = _named(limited.base_url, "first")
        second = _named(healthy.base_url, "second")
        shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
        async with AsyncClient(first, max_retries=0, shared_state=shared) as one:
            with pytest.raises(RateLimitError):
                await one.chat.completions.create(model="m", messages="hi")
        assert len(limited.requests) == 1
        group = RetryProvider([first, second], shuffle=False)
        async with AsyncClient(group, shared_state=shared) as other:
            reply = await other.chat.completions.create(model="m", messages="hi")
        assert reply.provider == "second"
        assert len(limited.requests) == 1  # the cooling provider was not tried
        args = ("failover", limited.base_url, redis_url, namespace, healthy.base_url)
        result = await anyio.run_process(
            [sys.executable, "-m", "tests.shared_worker", *args], cwd=ROOT, check=False
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().split() == ["second"]
        assert len(limited.requests) == 1 and len(healthy.requests) == 2


async def test_consecutive_failures_are_counted_across_clients(
    redis_url: str, namespace: str
) -> None:
    """Three clients each see one 500 from a provider: three failures in a row in all,
    so it cools down for every client (each alone saw only one)."""
    async with (
        OpenAITestServer(default=Reply(status=500)) as failing,
        OpenAITestServer() as healthy,
    ):
        first = _named(failing.base_url, "first")
        second = _named(healthy.base_url, "second")
        shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
        for _ in range(3):
            async with AsyncClient(first, max_retries=0, shared_state=shared) as one:
                with pytest.raises(InternalServerError):
                    await one.chat.completions.create(model="m", messages="hi")
                assert one.health.cooling_until("first") is None  # one failure here
        group = RetryProvider([first, second], shuffle=False)
        async with AsyncClient(group, shared_state=shared) as other:
            reply = await other.chat.completions.create(model="m", messages="hi")
        assert reply.provider == "second"
        assert len(failing.requests) == 3


async def test_a_long_request_keeps_its_slot_past_the_lease(
    server: OpenAITestServer, redis_url: str, namespace: str
) -> None:
    """A request running three times the lease keeps its slot (the lease is renewed):
    another client under the same concurrency of 1 waits for it to finish."""
    server.add_reply(Reply(delay=0.9))
    limits = {NAME: RateLimit(concurrency=1)}
    shared = SharedState(redis_url, namespace=namespace, timeout=SHARING, lease=0.3)
    finished: list[str] = []

    async def call(client: AsyncClient, name: str) -> None:
        await client.chat.completions.create(model="m", messages="hi")
        finished.append(name)

    async with (
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared) as one,
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared) as two,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, one, "long")
                while not server.requests:  # noqa: ASYNC110 (the server offers no event)
                    await anyio.sleep(0.01)
                await anyio.sleep(0.45)  # past the first lease's expiry
                tg.start_soon(call, two, "short")
    assert finished == ["long", "short"]
    assert server.max_in_flight == 1


def test_sync_client_shares_limits(redis_url: str, namespace: str) -> None:
    """The sync Client takes the same shared_state and keeps its budget in Redis."""
    from asyncprov import Client

    limits = {NAME: RateLimit(rpm=6000)}
    server = OpenAITestServer()
    with server.run_in_thread():
        shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
        with Client(base_url=server.base_url, rate_limits=limits, shared_state=shared) as client:
            reply = client.chat.completions.create(model="m", messages="hi")
            assert reply.choices[0].message.content == "You said: hi"
            assert client.rate_limits.stats(NAME).requests == 1
    import redis

    with redis.Redis.from_url(redis_url) as direct:
        assert direct.exists(f"{namespace}:{NAME}:rpm") == 1


async def test_fail_open_goes_local_logs_once_and_shares_again(
    server: OpenAITestServer,
    own_redis: RedisServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis slow, then stopped mid-run: calls go on under this process's own limits
    (one log line), and once Redis is back they are shared again (one log line)."""
    caplog.set_level(logging.WARNING, logger="asyncprov")
    limits = {NAME: RateLimit(rpm=6000, concurrency=4)}
    shared = SharedState(own_redis.url, namespace=namespace, timeout=0.2, retry_interval=0.05)
    async with AsyncClient(
        base_url=server.base_url, rate_limits=limits, shared_state=shared
    ) as client:
        await client.chat.completions.create(model="m", messages="hi")
        own_redis.command("CLIENT", "PAUSE", "600")  # slow: no answer within 0.2 s
        started = anyio.current_time()
        await client.chat.completions.create(model="m", messages="hi")
        assert anyio.current_time() - started < 0.5  # waited the timeout, then went local
        own_redis.stop()
        with anyio.fail_after(2):  # never hangs
            for _ in range(5):
                await client.chat.completions.create(model="m", messages="hi")
        own_redis.start()
        assert b"rpm" not in own_redis.command("KEYS", "*")  # a fresh Redis: nothing yet
        with anyio.fail_after(5):
            while "reachable again" not in caplog.text:
                await anyio.sleep(0.06)
                await client.chat.completions.create(model="m", messages="hi")
        assert f"{namespace}:{NAME}:rpm".encode() in own_redis.command("KEYS", "*")
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(down) == 1 and len(back) == 1
    assert "own limits" in down[0].getMessage()


async def test_fail_closed_raises_promptly_when_redis_is_slow_or_down(
    server: OpenAITestServer, own_redis: RedisServer, namespace: str
) -> None:
    """on_error="closed": a Redis that does not answer in time (paused) or is down
    raises SharedStateError within the timeout, sends nothing, and shows no password."""
    limits = {NAME: RateLimit(rpm=6000)}
    shared = SharedState(
        own_redis.url, namespace=namespace, on_error="closed", timeout=0.1, retry_interval=0.05
    )
    async with AsyncClient(
        base_url=server.base_url, rate_limits=limits, shared_state=shared
    ) as client:
        await client.chat.completions.create(model="m", messages="hi")
        own_redis.command("CLIENT", "PAUSE", "800")  # every command waits 0.8 s
        started = anyio.current_time()
        with pytest.raises(SharedStateError, match="no answer in time"):
            await client.chat.completions.create(model="m", messages="hi")
        assert anyio.current_time() - started < 0.5
        own_redis.stop()
        with anyio.fail_after(1), pytest.raises(SharedStateError):
            await client.chat.completions.create(model="m", messages="hi")
    assert len(server.requests) == 1
    secret = SharedState(
        f"redis://:hunter2@127.0.0.1:{own_redis.port}/0", on_error="closed", timeout=0.1
    )
    async with AsyncClient(
        base_url=server.base_url, rate_limits=limits, shared_state=secret
    ) as client:
        with pytest.raises(SharedStateError) as raised:
            await client.chat.completions.create(model="m", messages="hi")
    assert "hunter2" not in str(raised.value)
    assert "***" in str(raised.value)
    assert "hunter2" not in repr(secret)
    # redis-py also takes the password as a query parameter, and a password may hold an
    # unencoded "/": neither is shown either.
    for url in (
        f"redis://127.0.0.1:{own_redis.port}/0?password=hunter2",
        "unix:///tmp/no-such.sock?db=0&password=hunter2",
    ):
        state = SharedState(url, on_error="closed", timeout=0.1)
        async with AsyncClient(
            base_url=server.base_url, rate_limits=limits, shared_state=state
        ) as client:
            with pytest.raises(SharedStateError) as raised:
                await client.chat.completions.create(model="m", messages="hi")
        shown = str(raised.value) + repr(state)
        assert "hunter2" not in shown and "ter2" not in shown and "***" in shown, shown


def test_shared_state_settings_are_checked() -> None:
    """A URL that is not Redis's, or that does not parse (a password with an unencoded
    "/"), is a ConfigurationError that does not echo it."""
    with pytest.raises(ConfigurationError) as raised:
        SharedState("http://user:hunter2@example.invalid")
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="percent-encode") as raised:
        SharedState("redis://user:hun/ter2@127.0.0.1:6379/0")
    assert "hun" not in str(raised.value) and "ter2" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="on_error"):
        SharedState("redis://127.0.0.1:1/0", on_error="maybe")
    with pytest.raises(ConfigurationError, match="shared_state"):
        AsyncClient(base_url="http://127.0.0.1:1/v1", shared_state=42)  # type: ignore[arg-type]


def test_importing_asyncprov_imports_no_redis() -> None:
    """redis is loaded only by a client given shared_state."""
    code = (
        "import sys, asyncprov; from asyncprov import AsyncClient, Client, SharedState\n"
        "SharedState('redis://127.0.0.1:1/0'); assert 'redis' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ}, timeout=60)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_gateway_workers_share_limits(
    server: OpenAITestServer, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """`asyncprov serve --workers 2 --redis URL`: both workers answer on one port and
    an upstream's rpm holds across them (60 requests at 20/s with a burst of 20 take
    2 s, however the connections were spread)."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[server]\nport = 0\n\n[shared_state]\nurl_env = "TEST_REDIS"\nnamespace = "{namespace}"'
        f'\n\n[providers.up]\ntype = "OpenAICompatible"\nbase_url = "{server.base_url}"\n'
        "rpm = 1200\n"
    )
    process = await anyio.open_process(
        [sys.executable, "-m", "asyncprov", "serve", "--config", str(config), "--workers", "2"],
        env={**os.environ, "TEST_REDIS": redis_url},
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = (await process.stdout.receive()).decode()
            url = line.split()[2]
            workers = _children(process.pid)
            assert len(workers) == 2
            before = [_cpu_ticks(pid) for pid in workers]
            import aiohttp

            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)  # a new connection each
            ) as session:

                async def send() -> None:
                    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                    async with session.post(url + "/chat/completions", json=body) as answer:
                        assert answer.status == 200, await answer.text()

                async with anyio.create_task_group() as tg:
                    for _ in range(60):
                        tg.start_soon(send)
            used = [_cpu_ticks(pid) - start for pid, start in zip(workers, before, strict=True)]
    finally:
        process.terminate()
        with anyio.fail_after(20):
            await process.wait()
    assert process.returncode == 0
    times = sorted(r.at for r in server.requests)
    assert len(times) == 60
    assert most_in_one_second(times) <= 20 + 20 + 4
    assert times[-1] - times[0] >= 1.8  # (60 - 20 burst) / 20 per second
    assert all(ticks > 0 for ticks in used)  # both workers served


async def test_batch_commands_share_one_rpm(
    server: OpenAITestServer, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Two `asyncprov batch --rpm 1200 --redis URL` runs at once share one budget of 20
    requests a second (a burst of 20): their 30 requests take half a second, where
    each alone would have sent its 15 at once."""
    commands = []
    for run in range(2):
        source = tmp_path / f"in{run}.jsonl"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        lines = [
            json.dumps(
                {"custom_id": str(i), "method": "POST", "url": "/v1/chat/completions"}
                | {"body": body}
            )
            for i in range(15)
        ]
        source.write_text("\n".join(lines) + "\n")
        target = tmp_path / f"out{run}.jsonl"
        options = ["--base-url", server.base_url, "--rpm", "1200", "--redis", own_redis.url]
        commands.append(
            [sys.executable, "-m", "asyncprov", "batch", str(source), str(target), *options]
        )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for command in commands:
                tg.start_soon(lambda c=command: anyio.run_process(c, cwd=ROOT))
    times = sorted(r.at for r in server.requests)
    assert len(times) == 30
    assert times[-1] - times[0] >= 0.4  # (30 - 20 burst) / 20 per second
    assert b"asyncprov:OpenAICompatible:rpm" in own_redis.command("KEYS", "*")


async def test_gateway_answers_503_when_its_shared_limits_cannot_be_checked(
    server: OpenAITestServer,
) -> None:
    """A gateway whose Redis is down and on_error="closed" answers 503 in OpenAI's
    format, sends nothing upstream, and names neither Redis nor its address."""
    import aiohttp

    from asyncprov.server import create_app
    from tests.helpers import start_app

    from .redis_server import free_port

    shared = SharedState(f"redis://127.0.0.1:{free_port()}/0", on_error="closed", timeout=0.1)
    limits = {NAME: RateLimit(rpm=600)}
    async with AsyncClient(
        base_url=server.base_url, rate_limits=limits, shared_state=shared
    ) as client:
        runner, url = await start_app(create_app(client))
        try:
            async with aiohttp.ClientSession() as session:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(url + "/chat/completions", json=body) as answer:
                    status, error = answer.status, (await answer.json())["error"]
        finally:
            await runner.cleanup()
    assert status == 503
    assert error["type"] == "shared_state_error"
    assert "rate limits" in error["message"] and "127.0.0.1" not in error["message"]
    assert server.requests == []


async def test_a_429_pause_holds_back_every_client(
    server: OpenAITestServer, redis_url: str, namespace: str
) -> None:
    """Two 429s in a row pause the provider (for the 0.3 s they asked) for every client
    on the Redis: another client's request waits out the same pause."""
    import redis

    limited = Reply(status=429, headers={"retry-after-ms": "300"})
    server.add_reply(limited, limited)
    limits = {NAME: RateLimit(rpm=6000)}
    shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
    async with (
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared) as one,
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared) as two,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: one.chat.completions.create(model="m", messages="one"))
                with redis.Redis.from_url(redis_url) as direct:
                    # The second 429 set the pause in Redis (another client's doing: no
                    # event here).
                    while not direct.exists(f"{namespace}:{NAME}:pause"):  # noqa: ASYNC110
                        await anyio.sleep(0.005)
                paused_at = anyio.current_time()
                await two.chat.completions.create(model="m", messages="two")
                waited = anyio.current_time() - paused_at
    second_429 = server.requests[1].at
    sent = {r.json["messages"][0]["content"]: r.at for r in server.requests[2:]}
    assert waited >= 0.15  # the pause (0.3 s from the 429) held it back
    assert sent["two"] - second_429 >= 0.28
    assert sent["one"] - second_429 >= 0.28


async def test_requests_waiting_for_a_shared_slot_are_the_queue_depth(
    server: OpenAITestServer, redis_url: str, namespace: str
) -> None:
    """A request waiting for a shared slot counts in ``stats().waiting`` (what the
    gateway's /metrics shows as the queue's depth) until it is sent."""
    server.add_reply(Reply(delay=1.0))
    limits = {NAME: RateLimit(concurrency=1)}
    shared = SharedState(redis_url, namespace=namespace, timeout=SHARING)
    async with (
        AsyncClient(base_url=server.base_url, rate_limits=limits, shared_state=shared) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(2):
            tg.start_soon(lambda: client.chat.completions.create(model="m", messages="hi"))
        with anyio.fail_after(5):
            # Polled: no event tells of a wait, nor of a request's arrival.
            while client.rate_limits.stats(NAME).waiting != 1 or not server.requests:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # The first holds the slot for a second: the second waits for it, unsent.
        assert len(server.requests) == 1 and client.rate_limits.stats(NAME).waiting == 1
    assert client.rate_limits.stats(NAME).waiting == 0 and len(server.requests) == 2
