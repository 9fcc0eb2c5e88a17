"""`asyncprov serve`: configuration, routes, graceful shutdown, and the command itself."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import openai
import pytest

from asyncprov import AsyncClient, ConfigurationError
from asyncprov.providers import RetryProvider
from asyncprov.server import build_routes, create_app, load_config, parse_config, serve
from asyncprov.testing import OpenAITestServer, Reply, instant_retries
from tests.helpers import start_app

EXAMPLE = Path(__file__).parent.parent / "examples" / "gateway.toml"


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        build_routes(parse_config(data))
    return str(caught.value)


def upstream(url: str = "http://127.0.0.1:9/v1", **more: Any) -> dict[str, Any]:
    return {"type": "OpenAICompatible", "base_url": url, **more}


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"providers": {}}, "providers"),
        ({"providers": {"a": upstream()}, "server": {"prot": 1}}, "server.prot"),
        ({"providers": {"a": upstream()}, "server": {"port": 70000}}, "server.port"),
        ({"providers": {"a": {"type": "Nope", "base_url": "http://x/v1"}}}, "providers.a.type"),
        ({"providers": {"a": {"type": "OpenAICompatible"}}}, "providers.a.base_url"),
        ({"providers": {"a": upstream("ftp://x")}}, "providers.a"),
        ({"providers": {"a": upstream(api_key_env="GW_TEST_UNSET")}}, "providers.a.api_key_env"),
        ({"providers": {"a": {"type": "OpenaiChat"}}}, "providers.a.api_key_env"),
        ({"providers": {"a": upstream()}, "timeouts": {"idle": -1}}, "timeouts.idle"),
        (
            {"providers": {"a": upstream()}, "routes": {"m": {"providers": ["a", "b"]}}},
            "routes.m.providers[1]",
        ),
        ({"providers": {"a": upstream()}, "routes": {"m": {"providers": []}}}, "routes.m"),
        (
            {"providers": {"a": upstream()}, "routes": {"m": {"providers": ["a"], "mode": "x"}}},
            "routes.m.mode",
        ),
        ({"providers": {"a": upstream(), "b": upstream()}}, "routes"),
        ({"providers": {"a": upstream("http://u:pw@127.0.0.1:9/v1")}}, "providers.a.base_url"),
        ({"providers": {"a": upstream(models=["x", "x"])}}, "providers.a.models"),
        ({"providers": {"a": upstream(models=[""])}}, "providers.a.models.0"),
        ({"providers": {"a": upstream()}, "server": {"host": ""}}, "server.host"),
        ({"providers": {"a": upstream()}, "server": {"port": True}}, "server.port"),
        ({"providers": {"a": upstream()}, "server": {"grace_period": float("inf")}}, "grace"),
        ({"providers": {"a": upstream()}, "timeouts": {"total": True}}, "timeouts.total"),
        (
            {
                "providers": {"a": upstream()},
                "routes": {"m": {"providers": ["a"], "hedge_delay": 1}},
            },
            "routes.m",
        ),
    ],
)
def test_invalid_configuration_names_the_field(data: dict[str, Any], names: str) -> None:
    """Every configuration mistake is a ConfigurationError naming where it is."""
    message = config_error(data)
    assert names in message, message


def test_client_keys_variable_must_be_set() -> None:
    config = parse_config({"providers": {"a": upstream()}, "server": {"client_keys_env": "GW_X"}})
    with pytest.raises(ConfigurationError, match=r"server\.client_keys_env: .* GW_X is not set"):
        config.server.keys()


@pytest.mark.parametrize(
    ("server", "value"),
    [
        ({"client_keys_env": "GW_KEYS"}, ", ,"),
        ({"client_keys_env": "GW_KEYS"}, ""),
        ({"client_keys": ["good", " "]}, None),
    ],
)
def test_blank_client_keys_never_open_the_gateway(
    server: dict[str, Any], value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys asked for but blank stop the gateway at start instead of leaving it open."""
    if value is not None:
        monkeypatch.setenv("GW_KEYS", value)
    config = parse_config({"providers": {"a": upstream()}, "server": server})
    with pytest.raises(ConfigurationError, match=r"server\.client_keys"):
        config.server.keys()


def test_configuration_errors_never_show_key_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_KEY", "sk-secret-value")
    message = config_error({"providers": {"a": upstream("ftp://x", api_key_env="GW_TEST_KEY")}})
    assert "sk-secret-value" not in message


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "gw.toml"
    bad.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigurationError, match=r"gw\.toml is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigurationError, match=r"cannot read missing\.toml"):
        load_config(tmp_path / "missing.toml")
    bad.write_text('[server]\nhost = "127.0.0.1"\nport = "eighty"\n')
    with pytest.raises(ConfigurationError, match=r"gw.toml: server.port"):
        load_config(bad)


def test_example_configuration_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/gateway.toml is valid: a hedged group, a sequential one, implicit routes."""
    for name in ("OPENAI_API_KEY", "GROQ_API_KEY", "ASYNCPROV_GATEWAY_KEYS"):
        monkeypatch.setenv(name, "k1,k2")
    config = load_config(EXAMPLE)
    routes, fallback = build_routes(config)
    assert fallback is None and routes is not None
    assert set(routes) == {
        "chat",
        "cheap",
        "gpt-4o-mini",
        "gpt-4o",
        "llama-3.3-70b-versatile",
        "llama3.2",
    }
    chat = routes["chat"].provider
    assert isinstance(chat, RetryProvider) and chat.hedge and chat.hedge_delay == 1.5
    assert [p.name for p in chat.providers] == ["openai", "groq", "local"]
    assert [p.default_model for p in chat.providers] == [
        "gpt-4o-mini",
        "llama-3.3-70b-versatile",
        "llama3.2",
    ]
    assert config.server.keys() == ["k1", "k2"] and config.server.host == "127.0.0.1"
    assert config.timeouts.first_chunk == 60


def test_a_lone_provider_without_models_passes_everything_through() -> None:
    routes, fallback = build_routes(parse_config({"providers": {"up": upstream()}}))
    assert routes is None and fallback is not None and fallback.name == "up"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[OpenAITestServer, OpenAITestServer]]:
    first, second = OpenAITestServer(), OpenAITestServer()
    async with first, second:
        yield first, second


@contextlib.asynccontextmanager
async def serving(config: dict[str, Any], *, stop: anyio.Event | None = None) -> AsyncIterator[str]:
    """`serve` running in the background; yields its API root URL. Setting ``stop``
    starts its shutdown; leaving waits until serve() has returned."""
    stop, listening, urls = stop or anyio.Event(), anyio.Event(), []

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    run = functools.partial(
        serve, parse_config(config), ready=ready, stop=stop, handle_signals=False
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            await listening.wait()
        try:
            yield urls[0]
        finally:
            stop.set()


async def test_serve_routes_models_with_failover_and_keys(
    pair: tuple[OpenAITestServer, OpenAITestServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `serve`: /v1/models lists the routes; a route fails over and sends each
    provider its own model; unknown models are 404; client keys are enforced."""
    broken, good = pair
    broken.default = Reply(status=503)
    monkeypatch.setenv("GW_CLIENT_KEYS", "key-one, key-two")
    monkeypatch.setenv("GW_UPSTREAM_KEY", "sk-upstream-secret")
    config = {
        "server": {"port": 0, "client_keys_env": "GW_CLIENT_KEYS"},
        "providers": {
            "broken": upstream(broken.base_url, models=["b-model"]),
            "good": upstream(good.base_url, api_key_env="GW_UPSTREAM_KEY", models=["g-model"]),
        },
        "routes": {"smart": {"providers": ["broken", "good"]}},
    }
    async with serving(config) as url:
        oa = openai.AsyncOpenAI(base_url=url, api_key="key-two", max_retries=0)
        try:
            models = await oa.models.list()
            assert {m.id for m in models.data} == {"smart", "b-model", "g-model"}
            with instant_retries():
                reply = await oa.chat.completions.create(
                    model="smart", messages=[{"role": "user", "content": "hi"}]
                )
            assert reply.choices[0].message.content == "You said: hi"
            assert broken.requests[-1].json["model"] == "b-model"
            assert good.requests[-1].json["model"] == "g-model"
            assert good.requests[-1].headers["Authorization"] == "Bearer sk-upstream-secret"
            with pytest.raises(openai.NotFoundError) as missing:
                await oa.chat.completions.create(model="nope", messages=[])
            assert missing.value.code == "model_not_found"
            bad_key = openai.AsyncOpenAI(base_url=url, api_key="key-three", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                await bad_key.models.list()
            await bad_key.close()
        finally:
            await oa.close()


async def test_upstream_keys_are_never_echoed_or_logged(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that refuses the gateway's key, and echoes it back in its message, gets
    a 502 to the client (whose own key is fine), with the key masked everywhere."""
    secret = "sk-upstream-very-secret"
    monkeypatch.setenv("GW_UPSTREAM_KEY", secret)
    echo = {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error"}
    server.default = Reply(status=401, error=echo)
    content = {"choices": [{"index": 0, "delta": {"content": "first words"}}]}
    midstream = f"data: {json.dumps(content)}\n\ndata: {json.dumps({'error': echo})}\n\n"
    server.add_reply(Reply(raw=midstream.encode(), content_type="text/event-stream"))
    config = {
        "server": {"port": 0},
        "providers": {"up": upstream(server.base_url, api_key_env="GW_UPSTREAM_KEY")},
    }
    caplog.set_level(logging.DEBUG)
    body: dict[str, Any] = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}
    async with serving(config) as url, aiohttp.ClientSession() as session:
        body["stream"] = True  # the mid-stream error event, scripted first
        async with session.post(url + "/chat/completions", json=body) as response:
            text = await response.text()
        assert "first words" in text and "Incorrect API key" not in text
        for stream in (False, True):
            body["stream"] = stream
            async with session.post(url + "/chat/completions", json=body) as response:
                assert response.status == 502
                error = (await response.json())["error"]
                assert error["message"].startswith("an upstream provider refused the gateway")
                assert "Incorrect API key" not in error["message"]
                text += json.dumps(error)
    assert secret not in text
    assert secret not in caplog.text
    assert "Incorrect API key provided: ***" in caplog.text  # the details, in the log
    assert server.requests[0].headers["Authorization"] == f"Bearer {secret}"


async def read_events(response: aiohttp.ClientResponse) -> list[str]:
    return [
        line.decode().removeprefix("data: ").strip()
        async for line in response.content
        if line.startswith(b"data: ")
    ]


@pytest.mark.parametrize("grace", [5.0, 0.2])
async def test_graceful_shutdown(server: OpenAITestServer, grace: float) -> None:
    """At shutdown an in-flight stream finishes within the grace period; past it, the
    stream ends with an error event (never a fake [DONE]); new requests get 503."""
    if grace > 1:
        server.add_reply(Reply(content="one two three four five", chunk_delay=0.05))
    else:  # stalls after its first word: cut off by the 0.2 s grace period
        server.add_reply(Reply(content="one two three", fault="stall", fault_after=1))
    async with AsyncClient(base_url=server.base_url) as client:
        app = create_app(client, grace_period=grace)
        runner, url = await start_app(app)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with aiohttp.ClientSession() as session:
            response = await session.post(url + "/chat/completions", json=body)
            first = await response.content.readline()
            assert first.startswith(b"data: ")
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.cleanup)
                with anyio.fail_after(10):
                    events = await read_events(response)
            response.release()
    if grace > 1:
        assert events[-1] == "[DONE]"
        text = "".join(
            (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content", "")
            for e in [first.decode()[6:], *events[:-1]]
        )
        assert text == "one two three four five"
    else:
        assert "[DONE]" not in events
        error = json.loads(events[-1])["error"]
        assert error["code"] == 503 and "shutting down" in error["message"]
        with anyio.fail_after(10):
            await server.wait_for_disconnect()  # the upstream call was closed


async def test_draining_gateway_refuses_new_requests(server: OpenAITestServer) -> None:
    """Once shutdown has begun, new chat requests get 503 and /healthz says so."""
    async with AsyncClient(base_url=server.base_url) as client:
        app = create_app(client)
        runner, url = await start_app(app)
        try:
            await app.shutdown()  # what the runner's cleanup does first (the site stays up)
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with aiohttp.ClientSession() as session:
                async with session.post(url + "/chat/completions", json=body) as r:
                    assert r.status == 503
                    assert "shutting down" in (await r.json())["error"]["message"]
                async with session.get(url.removesuffix("/v1") + "/healthz") as r:
                    assert r.status == 503
        finally:
            await runner.cleanup()
    assert server.requests == []


def run_cli(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REKA_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "asyncprov", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env | kwargs.get("env", {}),
    )


def test_serve_command_runs_and_stops_on_sigterm() -> None:
    """`asyncprov serve --base-url ... --port 0` prints its URL, answers, and exits 0 on
    SIGTERM."""
    upstream_server = OpenAITestServer(default=Reply(content="through the CLI gateway"))
    with upstream_server.run_in_thread():
        process = run_cli("serve", "--base-url", upstream_server.base_url, "--port", "0")
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("asyncprov gateway: http://127.0.0.1:"), line
            url = line.split()[2]
            import openai as sync_openai

            oa = sync_openai.OpenAI(base_url=url, api_key="none", max_retries=0)
            reply = oa.chat.completions.create(
                model="whatever", messages=[{"role": "user", "content": "hi"}]
            )
            oa.close()
            assert reply.choices[0].message.content == "through the CLI gateway"
            assert upstream_server.requests[-1].json["model"] == "whatever"
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "shutting down" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve"], "serve needs --config FILE"),
        (["serve", "--config", "missing.toml"], "cannot read missing.toml"),
        (["serve", "--config", str(EXAMPLE)], "providers.openai.api_key_env"),
        (["serve", "--config", str(EXAMPLE), "--base-url", "http://x/v1"], "--base-url"),
        (["serve", "--provider", "Nope"], "--provider Nope: unknown provider 'Nope'"),
        (["serve", "--base-url", "http://127.0.0.1:9/v1", "--port", "-1"], "--port"),
    ],
)
def test_serve_command_fails_at_start_with_one_line(args: list[str], expected: str) -> None:
    process = run_cli(*args)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2  # a command line or configuration that cannot work
    assert expected in err and "Traceback" not in err
    assert err.count("\n") == 1, err


def test_demo_command() -> None:
    """`asyncprov demo` runs offline and reports who answered, failovers, hedges, TTFT."""
    process = run_cli("demo", "--requests", "9", "--seed", "4")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "9/9 answered" in out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [int(row[0]) for row in rows] == list(range(1, 10))
    assert {row[1] for row in rows} <= {"healthy", "flaky", "slow"}
    assert "retries:" in out and "time to first token: p50" in out


async def test_client_image_urls_are_passed_on_not_fetched(server: OpenAITestServer) -> None:
    """An image URL in a client's message reaches the upstream as it is; the gateway makes
    no request to it (it points at a port where nothing listens)."""
    image = {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}
    async with AsyncClient(base_url=server.base_url) as client:
        runner, url = await start_app(create_app(client))
        try:
            async with aiohttp.ClientSession() as session:
                body = {"model": "m", "messages": [message]}
                async with session.post(url + "/chat/completions", json=body) as r:
                    assert r.status == 200
        finally:
            await runner.cleanup()
    assert server.requests[-1].json["messages"][0]["content"][1] == image


async def test_unknown_paths_and_bad_auth_headers_answer_in_openai_json(
    server: OpenAITestServer,
) -> None:
    async with AsyncClient(base_url=server.base_url) as client:
        runner, url = await start_app(create_app(client, api_keys=["right-key"]))
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/nothing-here") as r:
                    assert r.status == 404 and "error" in await r.json()
                async with session.get(url + "/chat/completions") as r:
                    assert r.status == 405 and "error" in await r.json()
                    assert r.headers["Allow"] == "POST"
                for header in (b"right-key", b"Bearer \xff\xfe", b"Basic right-key"):
                    async with session.get(
                        url + "/models", headers={"Authorization": header.decode("latin-1")}
                    ) as r:
                        assert r.status == 401, header
                        assert (await r.json())["error"]["type"] == "authentication_error"
        finally:
            await runner.cleanup()


async def test_shutdown_answers_a_request_whose_body_is_still_arriving(
    server: OpenAITestServer,
) -> None:
    """A request still sending its body at shutdown gets a 503 at once, not a dropped
    connection after the grace period."""
    async with AsyncClient(base_url=server.base_url) as client:
        runner, _ = await start_app(create_app(client, grace_period=30))
        port = runner.addresses[0][1]
        stream = await anyio.connect_tcp("127.0.0.1", port)
        try:
            head = (
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":'
            )
            await stream.send(head.encode())
            with anyio.fail_after(5):
                while not app_inflight(runner):  # noqa: ASYNC110 (no event to wait on)
                    await anyio.sleep(0.01)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(runner.cleanup)
                    reply = b""
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while b"shutting down" not in reply:
                            reply += await stream.receive()
        finally:
            await stream.aclose()
    assert reply.startswith(b"HTTP/1.1 503")


def app_inflight(runner: aiohttp.web.AppRunner) -> list[object]:
    from asyncprov.server._app import _GATEWAY_KEY

    assert runner.app is not None
    return list(runner.app[_GATEWAY_KEY].inflight)


async def test_client_disconnects_mid_stream_log_no_errors(
    server: OpenAITestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients dropping a fast stream are routine: no ERROR log (a failed write to a gone
    client is not a server error)."""
    server.default = Reply(content="word " * 5000, chunks=5000)
    async with AsyncClient(base_url=server.base_url) as client:
        runner, url = await start_app(create_app(client))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        try:
            for _ in range(20):
                async with aiohttp.ClientSession() as session:
                    response = await session.post(url + "/chat/completions", json=body)
                    await response.content.readline()
                    response.close()  # drop the connection mid-stream
            with anyio.fail_after(5):
                while app_inflight(runner):  # noqa: ASYNC110 (no event to wait on)
                    await anyio.sleep(0.01)
        finally:
            await runner.cleanup()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_second_signal_ends_the_grace_period_at_once(tmp_path: Path) -> None:
    """SIGTERM starts a 60 s grace period; a second SIGTERM ends a stalled stream now, with
    an error event, and the process exits 0."""
    stalled = OpenAITestServer(default=Reply(content="a b c", fault="stall", fault_after=1))
    with stalled.run_in_thread():
        config = tmp_path / "gw.toml"
        config.write_text(
            f'[server]\nport = 0\ngrace_period = 60\n[providers.up]\ntype = "OpenAICompatible"'
            f'\nbase_url = "{stalled.base_url}"\n'
        )
        process = run_cli("serve", "--config", str(config))
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[2]
            messages = [{"role": "user", "content": "hi"}]
            body = json.dumps({"model": "m", "messages": messages, "stream": True}).encode()
            import urllib.request

            request = urllib.request.Request(
                url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.readline().startswith(b"data: ")
                process.send_signal(signal.SIGTERM)
                assert process.stderr is not None
                for _ in range(100):  # the log line saying the first signal was seen
                    line = process.stderr.readline()
                    if not line or "shutting down" in line:
                        break
                process.send_signal(signal.SIGTERM)
                rest = response.read().decode()
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, err
    assert "shutting down" in rest and "[DONE]" not in rest


async def test_a_key_given_to_the_client_is_masked_too(server: OpenAITestServer) -> None:
    secret = "sk-client-level-secret"
    echo = {"message": f"bad key {secret}", "type": "invalid_request_error"}
    server.default = Reply(status=401, error=echo)
    async with AsyncClient(base_url=server.base_url, api_key=secret) as client:
        runner, url = await start_app(create_app(client))
        try:
            async with aiohttp.ClientSession() as session:
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                async with session.post(url + "/chat/completions", json=body) as r:
                    assert r.status == 502
                    text = await r.text()
        finally:
            await runner.cleanup()
    assert secret not in text and "refused the gateway's credentials" in text
    assert "bad key" not in text  # no upstream text reaches a client


async def test_drain_answers_health_checks_on_new_and_open_connections(
    server: OpenAITestServer,
) -> None:
    """While draining, the gateway keeps listening: /healthz and new chat requests get
    503 on an already-open keep-alive connection and on a new one; the in-flight stream
    finishes within the grace period; then serve() returns."""
    server.add_reply(Reply(content="a b c d e f", chunk_delay=0.1))
    config = {
        "server": {"port": 0, "grace_period": 5},
        "providers": {"up": upstream(server.base_url)},
    }
    stop = anyio.Event()
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with anyio.fail_after(20):  # serve() must return once drained
        async with serving(config, stop=stop) as url, aiohttp.ClientSession() as kept:
            health = url.removesuffix("/v1") + "/healthz"
            async with kept.get(health) as r:  # opens the keep-alive connection
                assert r.status == 200
            async with aiohttp.ClientSession() as streaming:
                response = await streaming.post(
                    url + "/chat/completions", json={**body, "stream": True}
                )
                assert (await response.content.readline()).startswith(b"data: ")
                stop.set()
                await anyio.wait_all_tasks_blocked()
                async with kept.get(health) as r:
                    assert r.status == 503
                async with kept.post(url + "/chat/completions", json=body) as r:
                    assert r.status == 503
                    assert "shutting down" in (await r.json())["error"]["message"]
                async with aiohttp.ClientSession() as fresh, fresh.get(health) as r:
                    assert r.status == 503
                events = await read_events(response)
                response.release()
    assert events[-1] == "[DONE]"  # and leaving waited for serve() to return


async def test_failures_name_no_upstream_address_or_provider(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unreachable upstream: the client learns the public model, the kind of failure
    and a request id, never the upstream's host:port or provider name; the log has the
    details under that request id."""
    config = {
        "server": {"port": 0},
        "providers": {"internal-east": upstream("http://127.0.0.1:9/v1", models=["m-up"])},
        "routes": {"chat": {"providers": [{"provider": "internal-east", "model": "m-up"}]}},
    }
    caplog.set_level(logging.INFO)
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    with instant_retries():
        async with serving(config) as url, aiohttp.ClientSession() as session:
            for stream in (False, True):
                async with session.post(
                    url + "/chat/completions", json={**body, "stream": stream}
                ) as r:
                    assert r.status == 502
                    request_id = r.headers["X-Request-Id"]
                    error = (await r.json())["error"]
                assert error["type"] == "connection_error"
                assert error["message"] == (
                    f"the upstream provider could not be reached (model 'chat', request "
                    f"{request_id})"
                )
                assert "127.0.0.1" not in str(error) and "internal-east" not in str(error)
                logged = [m for m in caplog.messages if request_id in m]
                assert logged and "internal-east" in logged[0] and "127.0.0.1:9" in logged[0]


def test_a_group_sigterm_lets_every_worker_drain() -> None:
    """systemd and `kill -TERM -PGID` signal the whole process group: each worker of
    `serve --workers` gets SIGTERM from the kernel and again from its parent, and still
    finishes its in-flight request within the grace period."""
    import threading
    import time
    import urllib.request

    upstream = OpenAITestServer(default=Reply(content="drained", delay=1.5))
    with upstream.run_in_thread():
        args = ["serve", "--base-url", upstream.base_url, "--port", "0", "--workers", "2"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REKA_"))}
        process = subprocess.Popen(
            [sys.executable, "-m", "asyncprov", *args, "--grace-period", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # a group of its own, signalled whole below
        )
        answers: list[tuple[int, str]] = []
        try:
            assert process.stdout is not None
            url = process.stdout.readline().split()[2]
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            request = urllib.request.Request(
                url + "/chat/completions",
                data=body.encode(),
                headers={"Content-Type": "application/json"},
            )

            def call() -> None:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers.append((response.status, json.loads(response.read())))

            caller = threading.Thread(target=call)
            caller.start()
            for _ in range(500):  # until the request is upstream (in flight at a worker)
                if upstream.requests:
                    break
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGTERM)
            caller.join(30)
            _, err = process.communicate(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert len(answers) == 1, err
    status, reply = answers[0]
    assert status == 200 and reply["choices"][0]["message"]["content"] == "drained"
    assert process.returncode == 0, err
