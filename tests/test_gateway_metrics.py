"""The gateway's ``/metrics``: scraped and parsed with prometheus-client's own parser
after a known mix of requests, the counters say exactly what was sent."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from asyncprov import AsyncClient, ConfigurationError, RateLimit
from asyncprov.server import build_routes, create_app, parse_config, serve
from asyncprov.testing import OpenAITestServer, Reply, instant_retries
from tests.helpers import start_app

KEY = "gw-client-key"
SCRAPE_KEY = "gw-scrape-key"
CHAT = "/v1/chat/completions"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def upstreams() -> AsyncIterator[list[OpenAITestServer]]:
    a, b, c = OpenAITestServer(), OpenAITestServer(), OpenAITestServer()
    async with a, b, c:
        yield [a, b, c]


@contextlib.asynccontextmanager
async def gateway(
    upstreams: list[OpenAITestServer], **options: Any
) -> AsyncIterator[tuple[str, AsyncClient]]:
    """A gateway with route ``chat`` (a, failing over to b) and ``solo`` (c)."""
    a, b, c = upstreams
    config = parse_config(
        {
            "providers": {
                "a": {"type": "OpenAICompatible", "base_url": a.base_url},
                "b": {"type": "OpenAICompatible", "base_url": b.base_url},
                "c": {"type": "OpenAICompatible", "base_url": c.base_url},
            },
            "routes": {"chat": {"providers": ["a", "b"]}, "solo": {"providers": ["c"]}},
        }
    )
    routes, _ = build_routes(config)
    async with AsyncClient(max_retries=0, rate_limits=options.pop("rate_limits", None)) as client:
        app = create_app(client, routes=routes, api_keys=[KEY], metrics=True, **options)
        runner, url = await start_app(app)
        try:
            yield url.removesuffix("/v1"), client
        finally:
            await runner.cleanup()


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str | None = KEY
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(url + CHAT, json=body, headers=headers) as response:
        return response.status, await response.text()


async def _scrape(http: aiohttp.ClientSession, url: str, key: str | None = KEY) -> Samples:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(url + "/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return _parse(await response.text())


def _ask(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


async def test_counters_match_a_mix_of_successes_failovers_and_errors(
    upstreams: list[OpenAITestServer],
) -> None:
    """Requests by route, model, provider and status; errors by kind; upstream attempts
    by provider and outcome; the time histograms' counts; provider cool-downs."""
    a, b, c = upstreams
    a.add_reply("one", "two", Reply(status=500), "streamed", Reply(status=503))
    b.add_reply("after failover", Reply(status=503))
    c.add_reply(
        Reply(content="a b c d e f", fault="truncate", fault_after=2),
        Reply(status=429, headers={"Retry-After": "30"}),
    )
    with instant_retries():
        async with gateway(upstreams) as (url, _), aiohttp.ClientSession() as http:
            statuses = [
                (await _post(http, url, _ask("chat")))[0],  # a
                (await _post(http, url, _ask("chat")))[0],  # a
                (await _post(http, url, _ask("chat")))[0],  # a 500, then b
                (await _post(http, url, _ask("chat", stream=True)))[0],  # a, streamed
                (await _post(http, url, _ask("chat")))[0],  # a 503, b 503
                (await _post(http, url, _ask("solo", stream=True)))[0],  # c breaks off
                (await _post(http, url, _ask("solo")))[0],  # c 429: cools down
                (await _post(http, url, _ask("nope")))[0],  # no such model
                (await _post(http, url, _ask("chat"), key=None))[0],  # no key
            ]
            samples = await _scrape(http, url)
    assert statuses == [200, 200, 200, 200, 503, 200, 429, 404, 401]

    def requests(model: str, provider: str, status: str) -> float:
        return _value(
            samples,
            "asyncprov_gateway_requests_total",
            route=CHAT,
            model=model,
            provider=provider,
            status=status,
        )

    assert requests("chat", "a", "200") == 3
    assert requests("chat", "b", "200") == 1
    assert requests("chat", "none", "503") == 1
    assert requests("solo", "none", "429") == 1
    assert requests("solo", "c", "200") == 1
    assert requests("unknown", "none", "404") == 1
    assert requests("none", "none", "401") == 1
    every = sum(v for (n, _), v in samples.items() if n == "asyncprov_gateway_requests_total")
    assert every == len(statuses)

    errors = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "asyncprov_gateway_errors_total" and value
    }
    assert errors == {
        "server_error": 1,
        "rate_limit_error": 1,
        "stream_interrupted_error": 1,
        "invalid_request_error": 1,
        "authentication_error": 1,
    }

    attempts = {
        (dict(labels)["provider"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "asyncprov_gateway_upstream_attempts_total" and value
    }
    assert attempts == {
        ("a", "ok"): 3,
        ("a", "InternalServerError"): 2,
        ("b", "ok"): 1,
        ("b", "InternalServerError"): 1,
        ("c", "RateLimitError"): 1,
        ("c", "ok"): 1,
    }

    duration = "asyncprov_gateway_request_duration_seconds_count"
    assert _value(samples, duration, route=CHAT, model="chat", provider="a") == 3
    ttft = "asyncprov_gateway_time_to_first_token_seconds_count"
    assert _value(samples, ttft, model="chat", provider="a") == 1
    assert _value(samples, ttft, model="solo", provider="c") == 1
    assert _value(samples, "asyncprov_gateway_in_flight_requests") == 0
    assert _value(samples, "asyncprov_gateway_in_flight_streams") == 0
    cooling = {
        dict(labels)["provider"]: value
        for (name, labels), value in samples.items()
        if name == "asyncprov_gateway_provider_cooling"
    }
    assert cooling == {"a": 0, "b": 0, "c": 1}  # c answered 429 with Retry-After: 30


async def test_in_flight_requests_and_the_rate_limit_queue(
    upstreams: list[OpenAITestServer],
) -> None:
    """While requests wait under a provider's concurrency limit, the scrape shows them
    in flight and queued; once answered, both are back to zero."""
    upstreams[2].default = Reply(delay=0.3)
    limits = {"c": RateLimit(concurrency=1)}
    async with gateway(upstreams, rate_limits=limits) as (url, client):
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(_post, http, url, _ask("solo"))
            with anyio.fail_after(5):  # the limiter has no event to await: look again
                while client.rate_limits.stats("c").waiting < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.005)
            samples = await _scrape(http, url)
            assert _value(samples, "asyncprov_gateway_rate_limit_queue_depth", provider="c") == 2
            assert _value(samples, "asyncprov_gateway_rate_limit_queue_depth", provider="a") == 0
            assert _value(samples, "asyncprov_gateway_in_flight_requests") == 3
        async with aiohttp.ClientSession() as http:
            samples = await _scrape(http, url)
    assert _value(samples, "asyncprov_gateway_rate_limit_queue_depth", provider="c") == 0
    assert _value(samples, "asyncprov_gateway_in_flight_requests") == 0
    chat = _value(
        samples,
        "asyncprov_gateway_requests_total",
        route=CHAT,
        model="solo",
        provider="c",
        status="200",
    )
    assert chat == 3


async def test_metrics_are_protected_by_the_client_keys_or_their_own(
    upstreams: list[OpenAITestServer],
) -> None:
    """Without a key /metrics answers 401; the client keys open it, unless scrape keys
    are set, which then are the only ones that do; scrapes are not counted."""
    async with gateway(upstreams) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "/metrics") as response:
            assert response.status == 401
        samples = await _scrape(http, url, key=KEY)
        samples = await _scrape(http, url, key=KEY)
        assert not any(n == "asyncprov_gateway_requests_total" for n, _ in samples)
    async with (
        gateway(upstreams, metrics_keys=[SCRAPE_KEY]) as (url, _),
        aiohttp.ClientSession() as http,
    ):
        headers = {"Authorization": f"Bearer {KEY}"}
        async with http.get(url + "/metrics", headers=headers) as response:
            assert response.status == 401
        await _scrape(http, url, key=SCRAPE_KEY)


async def test_a_pass_through_gateway_bounds_its_model_labels(
    upstreams: list[OpenAITestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model names a client makes up become labels only up to MAX_MODELS."""
    monkeypatch.setattr("asyncprov.server._metrics.MAX_MODELS", 2)
    upstreams[0].default = Reply(content="ok")
    async with AsyncClient(base_url=upstreams[0].base_url, max_retries=0) as client:
        runner, url = await start_app(create_app(client, metrics=True))
        try:
            async with aiohttp.ClientSession() as http:
                base = url.removesuffix("/v1")
                for model in ("m1", "m2", "m3", "m4", "m1"):
                    assert (await _post(http, base, _ask(model)))[0] == 200
                samples = await _scrape(http, base)
        finally:
            await runner.cleanup()
    models = {
        dict(labels)["model"]: value
        for (name, labels), value in samples.items()
        if name == "asyncprov_gateway_requests_total"
    }
    assert models == {"m1": 2, "m2": 1, "other": 2}


def test_metrics_switched_on_without_prometheus_client_say_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """metrics = true without prometheus-client is a configuration error naming the extra."""
    import builtins

    real_import = builtins.__import__

    def no_prometheus(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_prometheus)
    with pytest.raises(ConfigurationError, match=r"server\.metrics: .*asyncprov\[prometheus\]"):
        create_app(AsyncClient(base_url="http://127.0.0.1:9/v1"), metrics=True)


async def test_serve_exposes_metrics_with_their_own_keys(
    upstreams: list[OpenAITestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve`` turns /metrics on when prometheus-client is installed, guarded by
    ``metrics_keys_env`` when set."""
    monkeypatch.setenv("GW_SCRAPE_KEYS", SCRAPE_KEY)
    config = parse_config(
        {
            "server": {"port": 0, "metrics_keys_env": "GW_SCRAPE_KEYS"},
            "providers": {"up": {"type": "OpenAICompatible", "base_url": upstreams[0].base_url}},
        }
    )
    stop, listening, urls = anyio.Event(), anyio.Event(), []

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    run = functools.partial(serve, config, ready=ready, stop=stop, handle_signals=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            await listening.wait()
        try:
            async with aiohttp.ClientSession() as http:
                base = urls[0].removesuffix("/v1")
                assert (await _post(http, base, _ask("m"), key=None))[0] == 200
                samples = await _scrape(http, base, key=SCRAPE_KEY)
        finally:
            stop.set()
    assert _value(samples, "asyncprov_gateway_requests_total", route=CHAT, model="m",
                  provider="up", status="200") == 1  # fmt: skip


def test_serve_names_a_missing_scrape_key_variable_by_its_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --metrics-keys-env NAME` with NAME unset: exit 2, in flag words."""
    import io

    from asyncprov.cli import main

    monkeypatch.delenv("GW_NO_SUCH_KEYS", raising=False)
    argv = ["serve", "--base-url", "http://127.0.0.1:9/v1", "--port", "0"]
    assert main([*argv, "--metrics-keys-env", "GW_NO_SUCH_KEYS"], out=io.StringIO()) == 2
    assert capsys.readouterr().err == (
        "asyncprov: ConfigurationError: --metrics-keys-env: the environment variable "
        "GW_NO_SUCH_KEYS is not set\n"
    )
