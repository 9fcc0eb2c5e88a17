"""Per-provider rate limits: rpm/tpm pacing, a concurrency cap, 429s waited out, shared
by plain calls, batches and failover; waits counted under the testing switch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from asyncprov import (
    AsyncClient,
    BadRequestError,
    ChatCompletion,
    ConfigurationError,
    QueueTimeoutError,
    RateLimit,
    RateLimitError,
    RateLimits,
    RateLimitStats,
    RetryProviderError,
    Timeout,
    TotalTimeoutError,
)
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply, instant_retries

NAME = "OpenAICompatible"


@pytest.fixture
def testing_switch() -> Iterator[None]:
    with instant_retries():
        yield


def limited(server: OpenAITestServer, **limit: float) -> AsyncClient:
    # One attempt per call: what reaches the caller is the limiter's doing, not a retry's.
    return AsyncClient(
        base_url=server.base_url,
        max_retries=0,
        rate_limits={NAME: RateLimit(**limit)},  # type: ignore[arg-type]
    )


@pytest.mark.usefixtures("testing_switch")
async def test_rpm_paces_requests(server: OpenAITestServer) -> None:
    """rpm=60 lets one request through per second: four of five wait about a second."""
    async with limited(server, rpm=60) as client:
        for _ in range(5):
            await client.chat.completions.create(model="m", messages="hi")
        stats = client.rate_limits.stats(NAME)
    assert (stats.requests, stats.paced, stats.rate_limited) == (5, 4, 0)
    assert stats.paced_seconds == pytest.approx(4.0, abs=0.05)


@pytest.mark.usefixtures("testing_switch")
async def test_tpm_charges_estimates_and_settles_on_usage(server: OpenAITestServer) -> None:
    """tpm paces by estimated tokens, then counts what the provider reported using."""
    async with limited(server, tpm=600) as client:  # 10 tokens a second
        replies = [
            await client.chat.completions.create(model="m", messages="one two", max_tokens=50)
            for _ in range(3)
        ]
        stats = client.rate_limits.stats(NAME)
    used = sum(r.usage.total_tokens for r in replies if r.usage is not None)
    assert stats.tokens == used and used > 0
    assert stats.paced >= 2


@pytest.mark.usefixtures("testing_switch")
async def test_tpm_settles_a_stream_once_its_usage_arrives(server: OpenAITestServer) -> None:
    """A stream's estimate is corrected by the usage chunk it ends with (once)."""
    async with limited(server, tpm=600) as client:
        stream = await client.chat.completions.create(
            model="m", messages="one two", max_tokens=50, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async with stream:
            usage = [c.usage.total_tokens async for c in stream if c.usage is not None]
        stats = client.rate_limits.stats(NAME)
    assert stats.tokens == sum(usage) and usage and usage[0] < 50


async def test_concurrency_cap_is_shared_by_a_batch(server: OpenAITestServer) -> None:
    """The provider's concurrency cap holds even when the batch allows more in flight."""
    server.default = Reply(delay=0.02)
    async with limited(server, concurrency=2) as client:
        requests = ({"messages": f"m{i}"} for i in range(10))
        async with client.chat.completions.batch(requests, model="m", concurrency=8) as results:
            assert len([r async for r in results if r.ok]) == 10
        assert client.rate_limits.stats(NAME).in_flight == 0
    assert server.max_in_flight == 2


async def test_a_stream_holds_its_slot_until_closed(server: OpenAITestServer) -> None:
    """A streamed response keeps its concurrency slot until the stream is done with."""
    server.add_reply(Reply(content="a b c d", chunk_delay=0.01))
    async with limited(server, concurrency=1) as client:
        stream = await client.chat.completions.create(model="m", messages="x", stream=True)
        assert client.rate_limits.stats(NAME).in_flight == 1
        async with stream:
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert client.rate_limits.stats(NAME).in_flight == 0


@pytest.mark.usefixtures("testing_switch")
async def test_429_pauses_and_resends_instead_of_failing(server: OpenAITestServer) -> None:
    """A 429 pauses the provider for its Retry-After and the request is sent again."""
    server.add_reply(Reply(status=429, headers={"Retry-After": "7"}), "after the pause")
    async with limited(server, rpm=6000) as client:
        reply = await client.chat.completions.create(model="m", messages="hi")
        stats = client.rate_limits.stats(NAME)
    assert reply.choices[0].message.content == "after the pause"
    assert (stats.rate_limited, stats.requests, len(server.requests)) == (1, 2, 2)
    assert stats.paused_seconds == pytest.approx(7.0, abs=0.05)
    assert len(reply.attempts) == 1  # not a burned attempt


@pytest.mark.usefixtures("testing_switch")
async def test_429_limits(server: OpenAITestServer) -> None:
    """Too long a Retry-After, or too many 429s in a row, reach the caller as RateLimitError;
    without Retry-After the pauses back off 0.5, 1, 2... seconds."""
    server.add_reply(Reply(status=429, headers={"Retry-After": "120"}))
    async with limited(server, concurrency=4) as client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="m", messages="hi")
        assert len(server.requests) == 1

    server.add_reply(*[Reply(status=429) for _ in range(3)])
    async with limited(server, max_429_waits=2) as client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="m", messages="hi")
        stats = client.rate_limits.stats(NAME)
    assert stats.rate_limited == 2 and stats.paused_seconds == pytest.approx(1.5, abs=0.05)
    assert len(server.requests) == 4 and stats.in_flight == 0


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[OpenAITestServer, OpenAITestServer]]:
    async with OpenAITestServer() as a, OpenAITestServer() as b:
        yield a, b


@pytest.mark.usefixtures("testing_switch")
async def test_failover_waits_out_a_429_on_the_limited_provider(
    two_servers: tuple[OpenAITestServer, OpenAITestServer],
) -> None:
    """Failover attempts go through the same limiter: a 429 is waited out on the primary
    rather than failing over; a provider without limits fails over as before."""
    a, b = two_servers
    group = RetryProvider(
        [OpenAICompatible(base_url=a.base_url, name="primary"),
         OpenAICompatible(base_url=b.base_url, name="secondary")],
        shuffle=False,
    )  # fmt: skip
    a.add_reply(Reply(status=429, headers={"Retry-After": "1"}), "primary answers")
    async with AsyncClient(group, rate_limits={"primary": RateLimit(rpm=600)}) as client:
        reply = await client.chat.completions.create(model="m", messages="hi")
        assert reply.provider == "primary" and len(b.requests) == 0
        assert client.rate_limits.stats("primary").rate_limited == 1

        del client.rate_limits["primary"]
        a.add_reply(Reply(status=429, headers={"Retry-After": "1"}))
        reply = await client.chat.completions.create(model="m", messages="hi")
        assert reply.provider == "secondary"
        assert client.rate_limits.stats("primary") == RateLimitStats()


@pytest.mark.usefixtures("testing_switch")
async def test_wildcard_limits_each_provider_separately(
    two_servers: tuple[OpenAITestServer, OpenAITestServer],
) -> None:
    """A "*" limit gives every provider its own budget."""
    a, b = two_servers
    one = OpenAICompatible(base_url=a.base_url, name="one")
    two = OpenAICompatible(base_url=b.base_url, name="two")
    async with AsyncClient(rate_limits={"*": RateLimit(rpm=60)}) as client:
        for provider in (one, two, one, two):
            await client.chat.completions.create(model="m", messages="x", provider=provider)
        assert client.rate_limits.stats("one").paced == 1
        assert client.rate_limits.stats("two").paced == 1


@pytest.mark.parametrize("failover", ["direct", "failover", "nested failover"])
async def test_time_queued_in_the_limiter_does_not_count_toward_timeouts(
    server: OpenAITestServer, failover: str
) -> None:
    """rpm=120 lets two requests through at once, then one each half second. A third
    request with 0.2 s timeouts queues about 0.5 s and still succeeds, directly and in a
    failover race; a slow answer after queueing still times out."""
    fast = Timeout(connect=1, first_chunk=0.2, idle=0.2, total=0.2)
    upstream = OpenAICompatible(base_url=server.base_url)
    provider: OpenAICompatible | RetryProvider = upstream
    if failover != "direct":
        provider = RetryProvider([upstream], shuffle=False)
    if failover == "nested failover":
        provider = RetryProvider([provider], shuffle=False)
    async with AsyncClient(provider, rate_limits={NAME: RateLimit(rpm=120)}) as client:
        for stream in (False, False, True):
            reply = await client.chat.completions.create(
                model="m", messages="hi", stream=stream, timeout=fast
            )
            if not isinstance(reply, ChatCompletion):
                reply = await reply.collect()
            assert reply.choices[0].message.content == "You said: hi"
        stats = client.rate_limits.stats(NAME)
        assert stats.paced == 1 and stats.paced_seconds > 0.3
        server.add_reply(Reply(delay=1.0))
        with pytest.raises(TotalTimeoutError):
            await client.chat.completions.create(model="m", messages="slow", timeout=fast)
    assert len(server.requests) == 4


def test_registry_is_a_mapping() -> None:
    """Limits can be set, read and removed by name; only RateLimit values are accepted."""
    limits = RateLimits({"a": RateLimit(rpm=10)})
    limits["b"] = RateLimit(concurrency=3)
    assert dict(limits) == {"a": RateLimit(rpm=10), "b": RateLimit(concurrency=3)}
    del limits["a"]
    assert list(limits) == ["b"] and len(limits) == 1
    with pytest.raises(ConfigurationError):
        limits["c"] = {"rpm": 5}  # type: ignore[assignment]
    client = AsyncClient(rate_limits=limits)
    assert client.rate_limits is limits
    assert AsyncClient().rate_limits == {}


@pytest.mark.usefixtures("testing_switch")
async def test_a_burst_of_429s_pauses_once(server: OpenAITestServer) -> None:
    """Eight requests in flight all answered 429 (no Retry-After) are one burst: the
    first waits its 0.5 s alone, the second pauses the provider 0.5 s for the rest; no
    backoff doubled eight times."""
    server.add_reply(*[Reply(status=429) for _ in range(8)])
    async with limited(server) as client:
        batch = client.chat.completions.batch([{"model": "m", "messages": "hi"}] * 8, concurrency=8)
        async with batch as results:
            assert all([r.ok async for r in results])
        stats = client.rate_limits.stats(NAME)
    assert stats.rate_limited == 8
    assert stats.paused_seconds == pytest.approx(1.0, abs=0.1)


@pytest.mark.usefixtures("testing_switch")
async def test_error_answers_give_their_tokens_back(server: OpenAITestServer) -> None:
    """A request answered with an error used no tokens: its estimate is returned."""
    server.add_reply(*[Reply(status=400) for _ in range(5)])
    async with limited(server, tpm=6000) as client:
        for _ in range(5):
            with pytest.raises(BadRequestError):
                await client.chat.completions.create(model="m", messages="hi", max_tokens=500)
        stats = client.rate_limits.stats(NAME)
    assert stats.tokens == 0 and stats.paced == 0


async def test_a_queue_wait_past_max_wait_is_a_queue_timeout(server: OpenAITestServer) -> None:
    """With the provider's only slot held by an open stream, the next call waits max_wait
    for a turn and fails with QueueTimeoutError, having sent nothing."""
    limit = RateLimit(concurrency=1, max_wait=0.2)
    async with AsyncClient(base_url=server.base_url, rate_limits={NAME: limit}) as client:
        held = await client.chat.completions.create(model="m", messages="hold", stream=True)
        async with held:
            with pytest.raises(QueueTimeoutError) as caught:
                await client.chat.completions.create(model="m", messages="next")
        assert caught.value.phase == "queue" and isinstance(caught.value, TimeoutError)
        assert len(server.requests) == 1
        reply = await client.chat.completions.create(model="m", messages="after")
        assert reply.choices[0].message.content == "You said: after"


@pytest.mark.usefixtures("testing_switch")
async def test_429_backoff_is_per_request(server: OpenAITestServer) -> None:
    """Without Retry-After each request backs off 0.5, 1... s from its own first 429:
    a second request does not start where the first one stopped."""
    server.add_reply(*[Reply(status=429) for _ in range(6)])
    async with limited(server, max_429_waits=2) as client:
        for _ in range(2):
            with pytest.raises(RateLimitError):
                await client.chat.completions.create(model="m", messages="hi")
        stats = client.rate_limits.stats(NAME)
    assert stats.paused_seconds == pytest.approx(3.0, abs=0.05)  # (0.5 + 1) x 2


@pytest.mark.usefixtures("testing_switch")
async def test_retries_share_one_budget_of_429_waits(server: OpenAITestServer) -> None:
    """A call's retries do not start the limiter's 429 waits over."""
    server.add_reply(*[Reply(status=429)] * 5, Reply(status=500), *[Reply(status=429)] * 20)
    limits = {NAME: RateLimit(max_429_waits=5)}
    async with AsyncClient(base_url=server.base_url, max_retries=2, rate_limits=limits) as client:
        with pytest.raises(RetryProviderError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert len(server.requests) == 7  # 5 waited out, a 500, one retry's 429: no more
    assert [type(e).__name__ for e in caught.value.exceptions] == [
        "InternalServerError",
        "RateLimitError",
    ]
