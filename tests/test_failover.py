"""Failover against fault-injecting local servers: attempts seen, errors, timing, hedging."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from asyncprov import (
    AsyncClient,
    BadRequestError,
    InternalServerError,
    RetryNoProviderError,
    RetryProviderError,
    StreamInterruptedError,
    Timeout,
    TotalTimeoutError,
)
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply, instant_retries
from tests.helpers import TextOnly

FAST = Timeout(connect=2, first_chunk=0.3, idle=0.3, total=10)


@pytest.fixture(autouse=True)
def _no_waits() -> Iterator[None]:
    with instant_retries():
        yield


@pytest.fixture
async def servers() -> AsyncIterator[list[OpenAITestServer]]:
    a, b, c = OpenAITestServer(), OpenAITestServer(), OpenAITestServer()
    async with a, b, c:
        yield [a, b, c]


def group(servers: list[OpenAITestServer], **options: object) -> RetryProvider:
    names = ["primary", "secondary", "tertiary"]
    providers = [
        OpenAICompatible(base_url=s.base_url, name=n) for s, n in zip(servers, names, strict=False)
    ]
    options.setdefault("shuffle", False)
    return RetryProvider(providers, **options)  # type: ignore[arg-type]


async def read(client: AsyncClient, **kwargs: object) -> tuple[str, set[str | None]]:
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True, **kwargs)  # type: ignore[call-overload]
    chunks = [c async for c in stream]
    return "".join(c.choices[0].delta.content or "" for c in chunks), {c.provider for c in chunks}


BEFORE_CONTENT = [
    Reply(status=500),
    Reply(status=503, headers={"Retry-After": "1"}),
    Reply(status=401),
    Reply(status=404),
    Reply(fault="reset"),
    Reply(fault="no_done", fault_after=0),
    Reply(delay=5),
    Reply(fault="stall", fault_after=0),
    Reply(fault="keepalive", fault_after=0, chunk_delay=0.02),
    Reply(fault="trickle", fault_after=0, chunk_delay=0.02),
    Reply(fault="malformed", fault_after=0),
    Reply(fault="error_event", fault_after=0),
    Reply(fault="wrong_type"),
]


@pytest.mark.parametrize(
    "fault",
    BEFORE_CONTENT,
    ids=lambda r: r.fault or f"status{r.status}" if r.delay == 0 else "slow_headers",
)
async def test_fails_over_before_content(servers: list[OpenAITestServer], fault: Reply) -> None:
    """A failure before any content fails over; the secondary's whole reply arrives, once."""
    primary, secondary, _ = servers
    primary.add_reply(fault)
    secondary.add_reply(Reply(content="from the secondary"))
    async with AsyncClient(group(servers[:2]), timeout=FAST) as client:
        started = time.monotonic()
        text, providers = await read(client)
    assert text == "from the secondary" and providers == {"secondary"}
    assert len(primary.requests) == 1 and len(secondary.requests) == 1
    assert time.monotonic() - started < 3


async def test_non_stream_fails_over(servers: list[OpenAITestServer]) -> None:
    """A non-streaming call fails over too and reports who answered."""
    servers[0].add_reply(Reply(status=502))
    async with AsyncClient(group(servers[:2])) as client:
        reply = await client.chat.completions.create(model="m", messages="hi")
    assert reply.provider == "secondary" and reply.choices[0].message.content == "You said: hi"


async def test_single_provider_retry_recovers(servers: list[OpenAITestServer]) -> None:
    """single_provider_retry retries the first provider after a 5xx and a 429."""
    primary = servers[0]
    primary.add_reply(Reply(status=500), Reply(status=429, headers={"Retry-After": "2"}))
    provider = group(servers[:1], single_provider_retry=True, max_retries=5)
    async with AsyncClient(provider) as client:
        text, providers = await read(client)
    assert text == "You said: hi" and providers == {"primary"}
    assert len(primary.requests) == 3


async def test_single_provider_retry_gives_up_with_report(servers: list[OpenAITestServer]) -> None:
    """max_retries=3 makes 4 attempts; all 503s end in InternalServerError itself, with
    every attempt's error kept and listed in its note."""
    primary = servers[0]
    primary.default = Reply(status=503, error={"message": "busy", "type": "server_error"})
    provider = group(servers[:1], single_provider_retry=True, max_retries=3)
    async with AsyncClient(provider) as client:
        with pytest.raises(InternalServerError) as caught:
            await read(client)
    assert len(primary.requests) == 4
    assert caught.value.status == 503 and caught.value.provider == "primary"
    assert caught.value.__notes__[0].splitlines() == [
        "4 attempts on primary failed:",
        *["primary: InternalServerError: busy"] * 4,
    ]
    assert len(caught.value.exceptions) == 4
    assert all(
        isinstance(e, InternalServerError) and e.status == 503 for e in caught.value.exceptions
    )


async def test_everything_fails_lists_every_attempt(servers: list[OpenAITestServer]) -> None:
    """When all providers fail, the error lists `Name: Error: message` for each attempt."""
    servers[0].add_reply(Reply(status=500, error={"message": "boom"}))
    servers[1].add_reply(Reply(status=401, error={"message": "bad key"}))
    servers[2].add_reply(Reply(fault="wrong_type"))
    async with AsyncClient(group(servers)) as client:
        with pytest.raises(RetryProviderError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    lines = str(caught.value).splitlines()
    assert lines[1:3] == [
        "primary: InternalServerError: boom",
        "secondary: AuthenticationError: bad key",
    ]
    assert lines[3].startswith("tertiary: ResponseDecodeError: the response is not the expected")
    assert [type(e).__name__ for e in caught.value.exceptions] == [
        "InternalServerError",
        "AuthenticationError",
        "ResponseDecodeError",
    ]


async def test_lone_failure_is_reraised_as_itself(servers: list[OpenAITestServer]) -> None:
    """With one provider and one attempt, its own typed error comes back, not a wrapper."""
    servers[0].add_reply(Reply(status=500))
    async with AsyncClient(group(servers[:1])) as client:
        with pytest.raises(InternalServerError):
            await read(client)


async def test_bad_request_does_not_fail_over(servers: list[OpenAITestServer]) -> None:
    """A 400 means the request is wrong: raised at once, the secondary is never asked."""
    servers[0].add_reply(Reply(status=400, error={"message": "bad field"}))
    async with AsyncClient(group(servers[:2])) as client:
        with pytest.raises(BadRequestError):
            await read(client)
    assert servers[1].requests == []


async def test_long_retry_after_fails_over_now(servers: list[OpenAITestServer]) -> None:
    """A Retry-After over the cap is not waited for: fail over at once and cool down."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(status=429, headers={"Retry-After": "3600"}))
    async with AsyncClient(group(servers[:2], single_provider_retry=False)) as client:
        for _ in range(2):
            _, providers = await read(client)
            assert providers == {"secondary"}
    assert len(primary.requests) == 1  # cooling down: skipped on the second call
    assert len(secondary.requests) == 2


async def test_cool_down_after_consecutive_failures(servers: list[OpenAITestServer]) -> None:
    """Three failures in a row cool a provider down for that client, not for others."""
    primary, secondary, _ = servers
    primary.default = Reply(status=500)
    provider = group(servers[:2])
    async with AsyncClient(provider) as client:
        for _ in range(5):
            assert (await read(client))[1] == {"secondary"}
    assert len(primary.requests) == 3
    async with AsyncClient(provider) as fresh:  # health lives on the client
        await read(fresh)
    assert len(primary.requests) == 4
    assert len(secondary.requests) == 6


async def test_no_failover_after_content(servers: list[OpenAITestServer]) -> None:
    """Once content was delivered a break raises StreamInterruptedError; nothing is spliced."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(content="one two three", fault="truncate", fault_after=2))
    async with AsyncClient(group(servers[:2])) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        seen = []
        with pytest.raises(StreamInterruptedError) as caught:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == caught.value.partial_text == "one two "
    assert secondary.requests == []


async def test_stall_after_content_is_interrupted(servers: list[OpenAITestServer]) -> None:
    """A stall after content ends in StreamInterruptedError (idle), never a second provider."""
    servers[0].add_reply(Reply(content="a b c", fault="stall", fault_after=1))
    async with AsyncClient(group(servers[:2]), timeout=FAST) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            await read(client)
    assert caught.value.partial_text == "a "
    assert servers[1].requests == []


async def test_total_deadline_across_attempts(servers: list[OpenAITestServer]) -> None:
    """All providers stalling: the total timeout ends the call promptly, typed, phase total."""
    for server in servers:
        server.default = Reply(delay=30)
    timeout = Timeout(first_chunk=5, total=0.5)
    provider = group(servers, hedge=True, hedge_delay=0.05)
    async with AsyncClient(provider, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(TotalTimeoutError) as caught:
            await read(client)
        elapsed = time.monotonic() - started
    assert caught.value.phase == "total"
    assert 0.4 < elapsed < 1.5
    assert all(len(s.requests) == 1 for s in servers)


async def test_nothing_to_try() -> None:
    """No providers, or none able to take the request, raise RetryNoProviderError."""
    async with AsyncClient(RetryProvider([])) as client:
        with pytest.raises(RetryNoProviderError, match="no providers"):
            await client.chat.completions.create(model="m", messages="hi")


async def test_hedge_wins_and_closes_the_loser(servers: list[OpenAITestServer]) -> None:
    """Hedged: a slow primary is raced by the secondary, which wins; the loser is closed."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(delay=30))
    secondary.add_reply(Reply(content="quick answer with several words"))
    provider = group(servers[:2], hedge=True, hedge_delay=0.1)
    async with AsyncClient(provider) as client:
        started = time.monotonic()
        text, providers = await read(client)
        elapsed = time.monotonic() - started
        with anyio.fail_after(5):
            await primary.wait_for_disconnect()
    assert text == "quick answer with several words" and providers == {"secondary"}
    assert 0.1 <= elapsed < 2
    assert len(primary.requests) == 1 and len(secondary.requests) == 1


async def test_hedge_starts_next_at_once_on_failure(servers: list[OpenAITestServer]) -> None:
    """Hedged: when the current attempt fails, the next starts without waiting the delay."""
    servers[0].add_reply(Reply(status=500))
    provider = group(servers[:2], hedge=True, hedge_delay=30)
    async with AsyncClient(provider) as client:
        with anyio.fail_after(3):
            text, providers = await read(client)
    assert providers == {"secondary"} and text == "You said: hi"


async def test_hedge_primary_wins_when_fast(servers: list[OpenAITestServer]) -> None:
    """Hedged: a primary that answers within the delay is the only one asked."""
    provider = group(servers[:2], hedge=True, hedge_delay=2)
    async with AsyncClient(provider) as client:
        _, providers = await read(client)
    assert providers == {"primary"} and servers[1].requests == []


async def test_hedged_winner_output_is_not_duplicated(servers: list[OpenAITestServer]) -> None:
    """Both hedged attempts stream; only the winner's chunks reach the caller, each once."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(content="slow " * 5, delay=0.3, chunk_delay=0.01))
    secondary.add_reply(Reply(content="fast " * 5, chunk_delay=0.01))
    provider = group(servers[:2], hedge=True, hedge_delay=0.05)
    async with AsyncClient(provider) as client:
        text, providers = await read(client)
    assert text == "fast " * 5 and providers == {"secondary"}


async def test_images_filter_candidates(servers: list[OpenAITestServer]) -> None:
    """Providers that cannot take images are skipped; none able means a clear error."""
    with_images = RetryProvider([TextOnly(), OpenAICompatible(base_url=servers[0].base_url)])
    async with AsyncClient(with_images) as client:
        reply = await client.chat.completions.create(
            model="m", messages="hi", image="https://example.com/a.png"
        )
    assert reply.provider == "OpenAICompatible"
    async with AsyncClient(RetryProvider([TextOnly()])) as client:
        with pytest.raises(RetryNoProviderError, match="none of TextOnly supports images"):
            await client.chat.completions.create(messages="hi", image="https://example.com/a.png")


async def test_failover_logging(
    servers: list[OpenAITestServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Failover and cool-down are logged at INFO, attempts at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="asyncprov")
    servers[0].default = Reply(status=500)
    async with AsyncClient(group(servers[:2])) as client:
        for _ in range(3):
            await read(client)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", "failing over from primary to secondary: InternalServerError") in messages
    assert any(level == "INFO" and "primary: cooling down" in m for level, m in messages)
    assert any(level == "DEBUG" and m.startswith("attempt 1 on primary") for level, m in messages)


async def test_per_call_hedge_delay(servers: list[OpenAITestServer]) -> None:
    """hedge_delay= on one call hedges a sequential RetryProvider for that call only."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(delay=30))
    async with AsyncClient(group(servers[:2])) as client:
        with anyio.fail_after(3):
            _, providers = await read(client, hedge_delay=0.1)
    assert providers == {"secondary"}
    assert "hedge_delay" not in secondary.requests[-1].json


async def test_cooling_provider_is_waited_for_when_alone(servers: list[OpenAITestServer]) -> None:
    """When every candidate is cooling down, failover waits for one instead of giving up."""
    primary = servers[0]
    primary.add_reply(Reply(status=429, headers={"Retry-After": "3600"}))
    async with AsyncClient(group(servers[:1])) as client:
        with pytest.raises(Exception, match="429"):
            await read(client)
        assert client.health.cooling_until("primary") is not None
        text, providers = await read(client)  # waits are off under instant_retries()
    assert providers == {"primary"} and text == "You said: hi"
    assert len(primary.requests) == 2


async def test_attempts_record_each_try_in_order(servers: list[OpenAITestServer]) -> None:
    """Streams and completions list every try: failures first, the answering one last."""
    primary, secondary, _ = servers
    primary.add_reply(Reply(status=500), Reply(status=401))
    secondary.add_reply("ok", "ok")
    async with AsyncClient(group(servers[:2]), timeout=FAST) as client:
        stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
        async with stream:
            await stream.collect()
        completion = await client.chat.completions.create(model="m", messages="hi")
    for attempts in (stream.attempts, completion.attempts):
        assert [(a.provider, a.ok, a.error_type) for a in attempts] == [
            (
                "primary",
                False,
                "InternalServerError" if attempts is stream.attempts else "AuthenticationError",
            ),
            ("secondary", True, None),
        ]
        assert all(a.seconds >= 0 for a in attempts)
    assert "attempts" not in completion.model_dump()


async def test_attempts_of_a_hedge_loser_say_cancelled(servers: list[OpenAITestServer]) -> None:
    primary, secondary, _ = servers
    primary.add_reply(Reply(content="slow", delay=5))
    secondary.add_reply("fast")
    async with AsyncClient(
        group(servers[:2], hedge=True, hedge_delay=0.05), timeout=FAST
    ) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
    assert completion.choices[0].message.content == "fast"
    assert [(a.provider, a.ok, a.error_type) for a in completion.attempts] == [
        ("secondary", True, None),
        ("primary", False, "Cancelled"),
    ]


async def test_a_direct_call_has_one_attempt(servers: list[OpenAITestServer]) -> None:
    servers[0].add_reply("hello")
    async with AsyncClient(base_url=servers[0].base_url) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
    assert [(a.provider, a.ok) for a in completion.attempts] == [("OpenAICompatible", True)]
