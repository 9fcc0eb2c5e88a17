"""The call path: settings resolved once, per-attempt bounds for every request, retries
on every client, errors caught by kind, one HTTP seam (issue 11's defects, one test each)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from asyncprov import (
    APIConnectionError,
    AsyncClient,
    FirstChunkTimeoutError,
    InternalServerError,
    ProxyError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    RetryProviderError,
    StreamInterruptedError,
    Timeout,
)
from asyncprov.providers import OpenAICompatible, Raycast, RetryProvider
from asyncprov.testing import (
    OpenAITestServer,
    ProxyServer,
    RaycastTestServer,
    Reply,
    instant_retries,
)

COMPLETION = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"plain"},'
    b'"finish_reason":"stop"}]}'
)
STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"sse"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
SHORT = Timeout(connect=2, first_chunk=0.3, idle=0.3, total=20)


@pytest.fixture
def instant() -> Any:
    """Retry waits off (the testing switch)."""
    with instant_retries():
        yield


@pytest.fixture
async def servers() -> AsyncIterator[list[OpenAITestServer]]:
    async with OpenAITestServer() as a, OpenAITestServer() as b:
        yield [a, b]


async def _text(client: AsyncClient, stream: bool, **options: Any) -> str:
    if stream:
        reply = await client.chat.completions.create(
            model="m", messages="hi", stream=True, **options
        )
        return (await reply.collect()).choices[0].message.content or ""
    completion = await client.chat.completions.create(model="m", messages="hi", **options)
    return completion.choices[0].message.content or ""


def _modes(servers: list[OpenAITestServer], **member: Any) -> dict[str, Any]:
    """The same two servers as a lone provider and as every kind of failover group."""

    def members() -> list[OpenAICompatible]:
        return [
            OpenAICompatible(base_url=s.base_url, name=f"m{i}", **member)
            for i, s in enumerate(servers)
        ]

    return {
        "single": members()[0],
        "sequential": RetryProvider(members(), shuffle=False),
        "hedged": RetryProvider(members(), shuffle=False, hedge=True, hedge_delay=5),
        "single_provider_retry": RetryProvider(members(), single_provider_retry=True),
        "nested": RetryProvider([RetryProvider(members(), shuffle=False)], shuffle=False),
    }


MODES = ["single", "sequential", "hedged", "single_provider_retry", "nested"]


# --- 1, 2, 12: one precedence for every setting, in every mode ---------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_client_key_reaches_every_member(mode: str) -> None:
    """A key given to the client is used by members that have none (was: 401 in a group)."""
    async with (
        OpenAITestServer(api_key="client-key") as a,
        OpenAITestServer(api_key="client-key") as b,
    ):
        provider = _modes([a, b])[mode]
        async with AsyncClient(provider, api_key="client-key", max_retries=0) as client:
            assert await _text(client, stream=False) == "You said: hi"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
async def test_precedence_is_call_then_instance_then_client(
    servers: list[OpenAITestServer], mode: str, stream: bool
) -> None:
    """Key, headers and query: the call's win over the provider instance's, which win
    over the client's, the same in every failover mode."""
    provider = _modes(servers, api_key="instance-key", headers={"X-Who": "instance"})[mode]
    async with AsyncClient(provider, api_key="client-key", headers={"X-Who": "client"}) as client:
        await _text(client, stream)
        await _text(
            client,
            stream,
            api_key="call-key",
            extra_headers={"X-Who": "call", "X-Extra": "1"},
            extra_query={"tenant": "t1"},
            extra_body={"user": "u-9"},
        )
    first, second = sorted((r for s in servers for r in s.requests), key=lambda r: r.at)
    assert first.headers["Authorization"] == "Bearer instance-key"
    assert first.headers["X-Who"] == "instance"
    assert second.headers["Authorization"] == "Bearer call-key"
    assert second.headers["X-Who"] == "call" and second.headers["X-Extra"] == "1"
    assert second.query == {"tenant": "t1"}
    assert second.json["user"] == "u-9" and "extra_headers" not in second.json


@pytest.mark.parametrize("mode", MODES)
async def test_call_proxy_wins_over_member_proxy(
    servers: list[OpenAITestServer], mode: str
) -> None:
    """A per-call proxy wins over a member's own, in a group as for one provider."""
    async with ProxyServer() as member_proxy, ProxyServer() as call_proxy:
        provider = _modes(servers, proxy=member_proxy.url)[mode]
        async with AsyncClient(provider) as client:
            await _text(client, stream=False, proxy=call_proxy.url)
            await _text(client, stream=False)
    assert len(call_proxy.requests) == 1
    assert len(member_proxy.requests) == 1


async def test_client_proxy_is_the_fallback(servers: list[OpenAITestServer]) -> None:
    """The client's proxy applies to members without one of their own."""
    servers[0].default = Reply(status=500)
    async with ProxyServer() as member_proxy, ProxyServer() as client_proxy:
        group = RetryProvider(
            [
                OpenAICompatible(base_url=servers[0].base_url, name="own", proxy=member_proxy.url),
                OpenAICompatible(base_url=servers[1].base_url, name="none"),
            ],
            shuffle=False,
        )
        async with AsyncClient(group, proxy=client_proxy.url) as client:
            completion = await client.chat.completions.create(model="m", messages="hi")
    assert completion.provider == "none"
    assert len(member_proxy.requests) == 1 and len(client_proxy.requests) == 1


@pytest.mark.usefixtures("instant")
@pytest.mark.parametrize("mode", MODES)
async def test_call_timeout_and_retries_in_every_mode(
    servers: list[OpenAITestServer], mode: str
) -> None:
    """A per-call timeout bounds each attempt in every mode; a per-call max_retries
    governs a lone provider (a group keeps its own count)."""
    for s in servers:
        s.default = Reply(delay=3600)
    provider = _modes(servers)[mode]
    async with AsyncClient(provider, timeout=600) as client:
        with anyio.fail_after(10), pytest.raises(FirstChunkTimeoutError):
            await _text(client, stream=False, timeout=SHORT, max_retries=1)
    attempts = sum(len(s.requests) for s in servers)
    assert attempts == {"single": 2, "single_provider_retry": 3}.get(mode, 2)


@pytest.mark.usefixtures("instant")
async def test_call_base_url_and_bad_call_settings(servers: list[OpenAITestServer]) -> None:
    """base_url= on a call redirects it; malformed per-call settings are typed errors."""
    from asyncprov import ConfigurationError

    async with AsyncClient(base_url=servers[0].base_url) as client:
        await _text(client, stream=False, base_url=servers[1].base_url)
        for bad in (
            {"extra_headers": {"X-A": "a\r\nInjected: 1"}},
            {"extra_headers": {"X-A": 1}},
            {"max_retries": -1},
            {"max_retries": 1.5},
            {"extra_query": ["a"]},
        ):
            with pytest.raises(ConfigurationError):
                await _text(client, stream=False, **bad)
    assert len(servers[0].requests) == 0 and len(servers[1].requests) == 1


# --- 3: every attempt of a non-streaming request is bounded -------------------------------


@pytest.mark.usefixtures("instant")
@pytest.mark.parametrize("fault", ["stall", "keepalive", "trickle", "before_headers"])
@pytest.mark.parametrize("stream", [False, True])
async def test_stalled_attempts_are_bounded_and_retried(
    server: OpenAITestServer, fault: str, stream: bool
) -> None:
    """A stall before headers or mid-body, a keepalive-only and a trickled body each
    time out per attempt (first_chunk), are retried, and end naming the provider."""
    reply = (
        Reply(delay=3600)
        if fault == "before_headers"
        else Reply(fault=fault, fault_after=0, chunk_delay=0.05)  # type: ignore[arg-type]
    )
    server.default = reply
    async with AsyncClient(base_url=server.base_url, timeout=SHORT) as client:
        with anyio.fail_after(10), pytest.raises(FirstChunkTimeoutError) as caught:
            await _text(client, stream)
    assert len(server.requests) == 3
    assert caught.value.provider == "OpenAICompatible" and caught.value.phase == "first_chunk"
    assert [type(e) for e in caught.value.exceptions] == [FirstChunkTimeoutError] * 3
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.usefixtures("instant")
async def test_nonstream_first_chunk_then_success(server: OpenAITestServer) -> None:
    """A stalled first attempt is cut at first_chunk and the retry answers."""
    server.add_reply(Reply(fault="stall", fault_after=0))
    async with AsyncClient(base_url=server.base_url, timeout=SHORT) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
    assert completion.choices[0].message.content == "You said: hi"
    assert [a.error_type for a in completion.attempts] == ["FirstChunkTimeoutError", None]


# --- 4: a lone provider's retries never wait for its cool-down ----------------------------


async def test_seed_retry_shape_recovers_without_cooldown_wait(server: OpenAITestServer) -> None:
    """RetryProvider([p], single_provider_retry=True, max_retries=5) recovers from three
    500s at backoff pace: the cool-down (30 s after 3 failures) never sits between."""
    server.add_reply(*[Reply(status=500)] * 3)
    policy = RetryPolicy(max_retries=5, wait_initial=0.01)  # real waits, kept short
    provider = RetryProvider(
        [OpenAICompatible(base_url=server.base_url)], single_provider_retry=True, policy=policy
    )
    async with AsyncClient(provider) as client:
        with anyio.fail_after(5):  # the old cool-down made this take 30 s
            completion = await client.chat.completions.create(model="m", messages="hi")
        assert client.health.cooling_until("OpenAICompatible") is None  # success reset it
    assert len(server.requests) == 4
    assert [a.ok for a in completion.attempts] == [False, False, False, True]


# --- 5: a proxy refusing the credentials is not retried -----------------------------------


async def test_proxy_407_is_not_retried(server: OpenAITestServer) -> None:
    """407 from the proxy: one attempt, ProxyError(status=407), fails over like a 401."""
    async with ProxyServer(username="alice", password="right-pw") as proxy:
        bad = proxy.url.replace("http://", "http://alice:wrong-pw-123@")
        async with AsyncClient(base_url=server.base_url, proxy=bad) as client:
            with anyio.fail_after(5), pytest.raises(ProxyError) as caught:
                await client.chat.completions.create(model="m", messages="hi")
        assert len(proxy.requests) == 1
    assert caught.value.status == 407 and "refused the credentials" in str(caught.value)
    assert "wrong-pw-123" not in str(caught.value)


@pytest.mark.usefixtures("instant")
async def test_proxy_407_fails_over_to_the_next_member(servers: list[OpenAITestServer]) -> None:
    """In a group, a member whose proxy refuses its credentials is passed over at once."""
    async with ProxyServer(username="alice", password="right-pw") as proxy:
        bad = proxy.url.replace("http://", "http://alice:wrong@")
        group = RetryProvider(
            [
                OpenAICompatible(base_url=servers[0].base_url, name="proxied", proxy=bad),
                OpenAICompatible(base_url=servers[1].base_url, name="direct"),
            ],
            shuffle=False,
        )
        async with AsyncClient(group) as client:
            completion = await client.chat.completions.create(model="m", messages="hi")
    assert completion.provider == "direct"
    assert [a.error_type for a in completion.attempts] == ["ProxyError", None]


# --- 6, 11: retries by default, and errors you can catch by kind -------------------------


@pytest.mark.usefixtures("instant")
async def test_plain_client_retries_twice_by_default(server: OpenAITestServer) -> None:
    """AsyncClient(base_url=...) retries transient failures twice (three attempts)."""
    server.add_reply(Reply(status=503), Reply(fault="reset"))
    async with AsyncClient(base_url=server.base_url) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
        assert [a.error_type for a in completion.attempts] == [
            "InternalServerError",
            "APIConnectionError",
            None,
        ]
        server.add_reply(Reply(status=503))
        with pytest.raises(InternalServerError):
            await client.chat.completions.create(model="m", messages="hi", max_retries=0)
    assert len(server.requests) == 4


@pytest.mark.usefixtures("instant")
@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (Reply(status=500), InternalServerError),
        (Reply(status=429, headers={"Retry-After": "0"}), RateLimitError),
        (Reply(fault="reset"), APIConnectionError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_same_failures_raise_their_own_kind(
    server: OpenAITestServer, reply: Reply, kind: type[Exception], stream: bool
) -> None:
    """All attempts failing alike raise that kind (status, provider), every attempt kept."""
    server.default = reply
    async with AsyncClient(base_url=server.base_url) as client:
        with pytest.raises(kind) as caught:
            await _text(client, stream)
    error = caught.value
    assert type(error) is kind and len(server.requests) == 3
    assert getattr(error, "provider", None) == "OpenAICompatible"
    if reply.status >= 400:
        assert getattr(error, "status", None) == reply.status
    assert len(error.exceptions) == 3  # type: ignore[attr-defined]
    assert "3 attempts on OpenAICompatible failed:" in error.__notes__[0]


@pytest.mark.usefixtures("instant")
async def test_mixed_failures_are_a_group_except_star_can_split(
    server: OpenAITestServer,
) -> None:
    """Different kinds give RetryProviderError, an ExceptionGroup that except* splits; its
    message speaks of attempts on one provider when there was one."""
    server.add_reply(
        Reply(status=429, headers={"Retry-After": "0"}), Reply(status=500), Reply(status=503)
    )
    async with AsyncClient(base_url=server.base_url) as client:
        with pytest.raises(RetryProviderError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert str(group).startswith("3 attempts on OpenAICompatible failed:")
    seen: list[str] = []
    try:
        raise group
    except* RateLimitError as limited:
        seen.append(f"429 x{len(limited.exceptions)}")
    except* InternalServerError as failed:
        seen.append(f"5xx x{len(failed.exceptions)}")
    assert seen == ["429 x1", "5xx x2"]


@pytest.mark.usefixtures("instant")
async def test_group_of_providers_failing_alike_is_that_kind(
    servers: list[OpenAITestServer],
) -> None:
    """Two providers that both answer 500 give InternalServerError naming the last one."""
    for s in servers:
        s.default = Reply(status=500)
    group = RetryProvider(
        [OpenAICompatible(base_url=s.base_url, name=f"p{i}") for i, s in enumerate(servers)],
        shuffle=False,
    )
    async with AsyncClient(group) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert caught.value.provider == "p1" and len(caught.value.exceptions) == 2
    assert caught.value.__notes__[0].startswith("every provider failed (2 attempts):")


@pytest.mark.usefixtures("instant")
async def test_retries_never_multiply_in_a_group(server: OpenAITestServer) -> None:
    """A group's own settings govern its members: the client's max_retries is not added."""
    server.default = Reply(status=500)
    group = RetryProvider(
        [OpenAICompatible(base_url=server.base_url)], single_provider_retry=True, max_retries=1
    )
    async with AsyncClient(group, max_retries=5) as client:
        with pytest.raises(InternalServerError):
            await client.chat.completions.create(model="m", messages="hi")
    assert len(server.requests) == 2


def test_max_retries_and_policy_together_are_refused() -> None:
    """RetryProvider(max_retries=..., policy=...) would ignore one of them: refused."""
    from asyncprov import ConfigurationError

    with pytest.raises(ConfigurationError, match="either max_retries or policy"):
        RetryProvider(
            [OpenAICompatible(base_url="http://127.0.0.1:1/v1")],
            max_retries=3,
            policy=RetryPolicy(),
        )


# --- 8, 9: truncation is not decoding; parse by the mode asked for -----------------------


@pytest.mark.usefixtures("instant")
async def test_close_delimited_json_cut_short_is_truncation(server: OpenAITestServer) -> None:
    """A JSON body cut short on a close-delimited connection is a connection error, and
    is retried like any body cut short."""
    server.add_reply(Reply(fault="truncate"))
    async with AsyncClient(base_url=server.base_url) as client:
        completion = await client.chat.completions.create(model="m", messages="hi")
        server.add_reply(Reply(fault="truncate"))
        with pytest.raises(APIConnectionError, match="cut short"):
            await client.chat.completions.create(model="m", messages="hi", max_retries=0)
    assert [a.error_type for a in completion.attempts] == ["APIConnectionError", None]


@pytest.mark.parametrize("label", ["text/plain", "application/json", "text/event-stream"])
async def test_plain_text_to_a_stream_is_a_decode_error(
    client: AsyncClient, server: OpenAITestServer, label: str
) -> None:
    """A plain-text 200 to a streaming request, however labelled: ResponseDecodeError
    with status 200 and a snippet (was a ProviderError without a status)."""
    server.add_reply(Reply(raw=b"upstream says hello", content_type=label))
    with pytest.raises(ResponseDecodeError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert caught.value.status == 200 and "upstream says hello" in caught.value.body


@pytest.mark.parametrize(
    ("raw", "label", "stream", "text"),
    [
        (COMPLETION, "text/plain", False, "plain"),
        (COMPLETION, "application/octet-stream", False, "plain"),
        (STREAM, "application/json", True, "sse"),
        (STREAM, "text/plain", True, "sse"),
    ],
)
async def test_valid_body_with_the_wrong_label_is_parsed(
    client: AsyncClient, server: OpenAITestServer, raw: bytes, label: str, stream: bool, text: str
) -> None:
    """A valid body is parsed by the mode the caller asked for, whatever its label."""
    server.add_reply(Reply(raw=raw, content_type=label))
    assert await _text(client, stream) == text


# --- 10: every provider's stream ends with its terminator or raises -----------------------


@pytest.mark.parametrize(
    "raw",
    [b'data: {"text": "hel', b'data: {"text": "hello"}\n\ndata: {"text": " wor'],
)
async def test_raycast_cut_mid_event_is_interrupted(raw: bytes) -> None:
    """A Raycast body cut inside an event raises StreamInterruptedError, not success."""
    async with RaycastTestServer() as server:
        server.add_reply(Reply(raw=raw, content_type="text/event-stream"))
        provider = Raycast(auth="rc-token", base_url=server.base_url)
        async with AsyncClient(provider, max_retries=0) as client:
            with pytest.raises(StreamInterruptedError, match="middle of an event"):
                await _text(client, stream=True)


async def test_openai_stream_cut_mid_event_is_interrupted(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """The same check holds for the OpenAI wire (it lives in the one HTTP seam)."""
    server.add_reply(Reply(raw=STREAM[:40], content_type="text/event-stream"))
    with pytest.raises(StreamInterruptedError, match="middle of an event"):
        await _text(client, stream=True)


# --- 7: waits never exceed the nominal schedule, measured at the server -------------------


async def test_waits_between_attempts_follow_the_schedule(server: OpenAITestServer) -> None:
    """Three 500s with wait_initial=0.05: the gaps between attempts are at most 0.05 and
    0.1 s (plus the request's own time), and at least three quarters of them."""
    server.add_reply(*[Reply(status=500)] * 2)
    policy = RetryPolicy(max_retries=2, wait_initial=0.05)
    provider = RetryProvider(
        [OpenAICompatible(base_url=server.base_url)], single_provider_retry=True, policy=policy
    )
    async with AsyncClient(provider) as client:
        await client.chat.completions.create(model="m", messages="hi")
    first, second, third = (r.at for r in server.requests)
    assert 0.0375 <= second - first <= 0.05 + 0.04
    assert 0.075 <= third - second <= 0.1 + 0.04


async def test_retry_logging_names_no_key(
    server: OpenAITestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Retry log lines name the provider and the error, never the key."""
    caplog.set_level(logging.DEBUG, logger="asyncprov")
    server.add_reply(Reply(status=500))
    with instant_retries():
        async with AsyncClient(base_url=server.base_url, api_key="sk-secret-123456") as client:
            await client.chat.completions.create(model="m", messages="hi")
    assert "retrying" in caplog.text and "sk-secret-123456" not in caplog.text


async def test_call_settings_never_reach_the_body(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """Every create() keyword that configures the call is taken as a setting, never sent
    as a body field (a gateway or batch file must not set them from a body)."""
    from asyncprov._request import CALL_SETTINGS

    assert {
        "provider", "image", "images", "proxy", "api_key", "base_url", "timeout",
        "max_retries", "hedge_delay", "extra_headers", "extra_query", "extra_body",
    } == CALL_SETTINGS  # fmt: skip
    await client.chat.completions.create(
        model="m",
        messages="hi",
        api_key="k-123",
        base_url=server.base_url,
        timeout=30,
        max_retries=0,
        hedge_delay=1,
        extra_headers={"X-A": "1"},
        extra_query={"q": "1"},
        extra_body={"user": "u"},
        images=[],
        n=1,
    )
    body = server.requests[-1].json
    assert not CALL_SETTINGS & set(body)
    assert body["n"] == 1 and body["user"] == "u"


# --- review findings: retries never multiply, bounds hold, secrets stay out -------------


@pytest.mark.usefixtures("instant")
async def test_rate_limited_429s_are_not_retried_again(server: OpenAITestServer) -> None:
    """A limiter that waited out its 429s hands the caller one RateLimitError; the
    call's retries do not start the waits over (1 + max_429_waits sends, not x3)."""
    from asyncprov import RateLimit

    server.default = Reply(status=429, headers={"Retry-After": "0.2"})
    limits = {"*": RateLimit(max_429_waits=2)}
    async with AsyncClient(base_url=server.base_url, rate_limits=limits) as client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="m", messages="hi")
    assert len(server.requests) == 3


async def test_queue_timeout_is_not_retried(server: OpenAITestServer) -> None:
    """QueueTimeoutError (nothing was sent) fails over instead of queueing again."""
    from asyncprov import QueueTimeoutError, RateLimit

    limits = {"*": RateLimit(rpm=1, max_wait=0.1)}  # after one request, a minute's wait
    async with AsyncClient(base_url=server.base_url, rate_limits=limits) as client:
        await client.chat.completions.create(model="m", messages="hi")
        with anyio.fail_after(5), pytest.raises(QueueTimeoutError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert caught.value.exceptions == ()  # one attempt: not queued again
    assert len(server.requests) == 1


@pytest.mark.usefixtures("instant")
async def test_nested_groups_do_not_multiply_attempts(server: OpenAITestServer) -> None:
    """A retrying group inside another: 3 attempts in all, not 3 x 3."""
    server.default = Reply(status=500)
    inner = RetryProvider(
        [OpenAICompatible(base_url=server.base_url)], single_provider_retry=True, max_retries=2
    )
    outer = RetryProvider([inner], single_provider_retry=True, max_retries=2)
    async with AsyncClient(outer) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert len(server.requests) == 3 and len(caught.value.exceptions) == 3


async def test_client_base_url_reaches_every_member(servers: list[OpenAITestServer]) -> None:
    """AsyncClient(group, base_url=...) gives every member the new API root."""
    group = RetryProvider(
        [OpenAICompatible(base_url="http://127.0.0.1:9/v1", name=n) for n in ("a", "b")],
        shuffle=False,
    )
    async with AsyncClient(group, base_url=servers[1].base_url) as client:
        await _text(client, stream=False)
    assert len(servers[1].requests) == 1


async def test_call_headers_win_over_the_key_header(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """extra_headers={"Authorization": ...} wins over the key's own header."""
    await client.chat.completions.create(
        model="m",
        messages="hi",
        api_key="sk-key-123456",
        extra_headers={"Authorization": "Bearer t"},
    )
    assert server.requests[-1].headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize("raw", [b'{"id": "x", "choices": [', b"", b"   "])
async def test_framed_incomplete_json_is_a_decode_error(
    client: AsyncClient, server: OpenAITestServer, raw: bytes
) -> None:
    """A body with a Content-Length that arrived whole is complete: JSON that ends early
    there is a ResponseDecodeError, not a cut connection (and is not retried)."""
    server.add_reply(Reply(raw=raw))
    with pytest.raises(ResponseDecodeError):
        await client.chat.completions.create(model="m", messages="hi", max_retries=2)
    assert len(server.requests) == 1


@pytest.mark.usefixtures("instant")
async def test_folded_non_stream_is_bounded_by_first_chunk() -> None:
    """A provider without a native non-stream call (its stream folded): first_chunk
    bounds the whole reply, as for a JSON body, even while chunks keep coming."""
    words = " ".join(f"w{i}" for i in range(40))
    async with RaycastTestServer(default=Reply(content=words, chunk_delay=0.05)) as server:
        provider = Raycast(auth="rc-token", base_url=server.base_url)
        async with AsyncClient(provider, timeout=SHORT, max_retries=1) as client:
            with anyio.fail_after(10), pytest.raises(FirstChunkTimeoutError):
                await client.chat.completions.create(messages="hi")
    assert len(server.requests) == 2


async def test_hedged_queue_time_does_not_stretch_the_total(server: OpenAITestServer) -> None:
    """Hedged attempts queued behind their own sibling (concurrency 1) do not extend
    the call's total: it ends at its total."""
    from asyncprov import RateLimit, TotalTimeoutError

    server.default = Reply(delay=30)
    group = RetryProvider(
        [OpenAICompatible(base_url=server.base_url)],
        single_provider_retry=True,
        max_retries=5,
        hedge=True,
        hedge_delay=0.05,
    )
    timeout = Timeout(first_chunk=0.3, total=0.5)
    limits = {"*": RateLimit(concurrency=1)}
    async with AsyncClient(group, timeout=timeout, rate_limits=limits) as client:
        started = anyio.current_time()
        with anyio.fail_after(10), pytest.raises(TotalTimeoutError):
            await client.chat.completions.create(model="m", messages="hi")
        assert anyio.current_time() - started < 2.0  # was several times the total


def test_provider_settings_repr_hides_keys() -> None:
    """ProviderSettings' repr never shows a key or headers."""
    from asyncprov.providers import ProviderSettings

    shown = repr(
        ProviderSettings(
            api_key="sk-call-SECRET",
            client_api_key="sk-client-SECRET",
            headers={"Authorization": "Bearer SECRET"},
        )
    )
    assert "SECRET" not in shown


async def test_upstream_407_without_a_proxy_is_a_status_error(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """A 407 when no proxy is configured is the upstream's status, not a proxy failure."""
    from asyncprov import HTTPStatusError

    server.add_reply(Reply(status=407))
    with pytest.raises(HTTPStatusError) as caught:
        await client.chat.completions.create(model="m", messages="hi")
    assert caught.value.status == 407 and not isinstance(caught.value, ProxyError)


async def test_an_echoed_key_is_masked_in_the_error(server: OpenAITestServer) -> None:
    """An upstream echoing the key it was sent: the key is masked in the message, the
    body and the attempt records."""
    key = "sk-live-ECHOED-1234567890"
    server.add_reply(Reply(status=401, error={"message": f"bad key {key}", "type": "auth"}))
    async with AsyncClient(base_url=server.base_url, api_key=key) as client:
        with pytest.raises(Exception) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    error = caught.value
    assert key not in str(error) and key not in getattr(error, "body", "")
    assert "***" in str(error)
