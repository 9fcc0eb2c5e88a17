"""The gateway, driven by the official openai client (and raw HTTP where openai cannot)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import anyio
import openai
import pytest

from asyncprov import AsyncClient
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.server import create_app
from asyncprov.testing import OpenAITestServer, Reply, instant_retries
from tests.helpers import start_app

KEY = "gw-test-key"


@pytest.fixture
async def gateway(server: OpenAITestServer) -> AsyncIterator[str]:
    async with AsyncClient(base_url=server.base_url) as client:
        runner, url = await start_app(create_app(client, models=["m1", "m2"], api_keys=[KEY]))
        try:
            yield url
        finally:
            await runner.cleanup()


@pytest.fixture
async def oa(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=gateway, api_key=KEY, max_retries=0)
    yield client
    await client.close()


async def test_non_stream_through_openai(oa: openai.AsyncOpenAI, server: OpenAITestServer) -> None:
    """A non-streaming call through the gateway returns the upstream completion."""
    server.add_reply(Reply(content="via the gateway"))
    reply = await oa.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], temperature=0.1
    )
    assert reply.choices[0].message.content == "via the gateway"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert server.requests[-1].json["temperature"] == 0.1


async def test_stream_through_openai_with_usage(
    oa: openai.AsyncOpenAI, server: OpenAITestServer
) -> None:
    """A streamed call arrives whole, with the usage chunk when asked for."""
    server.add_reply(Reply(content="one two three"))
    stream = await oa.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_upstream_status_is_passed_on(
    oa: openai.AsyncOpenAI, server: OpenAITestServer
) -> None:
    """An upstream 429 (on every attempt) reaches the openai client as RateLimitError 429."""
    server.add_reply(
        *[Reply(status=429, error={"message": "slow down"}, headers={"Retry-After": "0"})] * 3
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await oa.chat.completions.create(model="m1", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 429 and "rate limiting" in str(caught.value)
    assert "slow down" not in str(caught.value)  # the upstream's own text stays in the log
    assert caught.value.response.headers["x-request-id"] in str(caught.value)


async def test_models_and_key_rejection(oa: openai.AsyncOpenAI, gateway: str) -> None:
    """/v1/models lists the configured models; a wrong key gets 401."""
    models = await oa.models.list()
    assert [m.id for m in models.data] == ["m1", "m2"]
    async with openai.AsyncOpenAI(base_url=gateway, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(
                model="m1", messages=[{"role": "user", "content": "x"}]
            )


async def test_body_too_large_and_bad_json(gateway: str) -> None:
    """A body over the limit gets 413, a non-JSON body 400, both as OpenAI error JSON."""
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        big = b'{"model": "m1", "messages": [], "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        url = f"{gateway}/chat/completions"
        async with session.post(url, data=io.BytesIO(big), headers=headers) as r:
            assert r.status == 413
        async with session.post(f"{gateway}/chat/completions", data=b"{no", headers=headers) as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with session.get(gateway.removesuffix("/v1") + "/healthz") as r:
            assert r.status == 200


async def test_midstream_failure_is_an_error_event_not_done(
    gateway: str, server: OpenAITestServer
) -> None:
    """An upstream break mid-stream ends the SSE stream with an error event, never [DONE]."""
    server.add_reply(Reply(content="a b c d", fault="truncate", fault_after=2))
    body = {"model": "m1", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as response,
    ):
        text = (await response.read()).decode()
    assert '"error"' in text.split("\n\n")[-2]
    assert "[DONE]" not in text


async def test_client_disconnect_cancels_upstream(gateway: str, server: OpenAITestServer) -> None:
    """A client leaving mid-stream makes the gateway drop its upstream request at once."""
    server.add_reply(Reply(content="tick " * 300, chunk_delay=0.01))
    body = {"model": "m1", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{gateway}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        await response.content.readany()
        response.close()
    with anyio.fail_after(5):
        await server.wait_for_disconnect()


async def test_failover_behind_the_gateway() -> None:
    """A gateway over a RetryProvider answers from the healthy provider."""
    bad, good = OpenAITestServer(default=Reply(status=503)), OpenAITestServer()
    async with bad, good:
        group = RetryProvider(
            [
                OpenAICompatible(base_url=bad.base_url, name="bad"),
                OpenAICompatible(base_url=good.base_url, name="good"),
            ],
            shuffle=False,
        )
        with instant_retries():
            async with AsyncClient(group) as client:
                runner, url = await start_app(create_app(client, models=["m"]))
                try:
                    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as oa:
                        reply = await oa.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "hi"}]
                        )
                finally:
                    await runner.cleanup()
    assert reply.choices[0].message.content == "You said: hi"
    assert len(bad.requests) == 1 and len(good.requests) == 1


async def test_openai_fields_pass_through_but_not_call_settings(
    oa: openai.AsyncOpenAI, server: OpenAITestServer
) -> None:
    """Every OpenAI body field reaches upstream; create()'s own settings never come from a body."""
    await oa.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "hi"}],
        user="u-7",
        n=1,
        logprobs=False,
        extra_body={"proxy": "http://evil.invalid:1", "api_key": "stolen", "timeout": 0.001},
    )
    sent = server.requests[-1]
    assert (sent.json["user"], sent.json["n"], sent.json["logprobs"]) == ("u-7", 1, False)
    assert not {"proxy", "api_key", "timeout"} & set(sent.json)
    assert "Authorization" not in sent.headers
