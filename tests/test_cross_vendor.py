"""Failover across vendors: OpenAI-shaped requests (an image and a tool) reach Anthropic,
OpenAI and Gemini wire formats, and the caller sees one clean OpenAI-shaped stream from
whichever answered."""

from __future__ import annotations

import pytest

from asyncprov import AsyncClient
from asyncprov.providers import Anthropic, Gemini, OpenAICompatible, RetryProvider
from asyncprov.testing import (
    AnthropicTestServer,
    GeminiTestServer,
    OpenAITestServer,
    Reply,
    instant_retries,
)

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfabd40000000049454e44ae426082"
)
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("stream", [True, False])
async def test_overloaded_then_cut_then_answered(stream: bool) -> None:
    """Anthropic overloaded (529), then an OpenAI server cut before any content, then
    Gemini answers: one clean reply from Gemini, each vendor asked for its own model,
    every attempt recorded."""
    overloaded = Reply(status=529, error={"type": "overloaded_error", "message": "Overloaded"})
    async with (
        AnthropicTestServer(default=overloaded) as claude,
        OpenAITestServer(default=Reply(fault="reset")) as openai,
        GeminiTestServer(replies=["Answered by Gemini."]) as gemini,
    ):
        group = RetryProvider(
            [
                Anthropic(api_key="k-ant", base_url=claude.base_url).with_model(
                    "claude-3-5-haiku-latest"
                ),
                OpenAICompatible(base_url=openai.base_url, name="openai").with_model("gpt-4o-mini"),
                Gemini(api_key="k-gem", base_url=gemini.base_url).with_model("gemini-2.0-flash"),
            ],
            shuffle=False,
        )
        with instant_retries():
            async with AsyncClient(group) as client:
                result = await client.chat.completions.create(
                    model="any", messages="what is this?", image=PNG, tools=[TOOL], stream=stream
                )
                if stream:
                    chunks = [chunk async for chunk in result]  # type: ignore[union-attr]
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                    providers = {c.provider for c in chunks}
                else:
                    text = result.choices[0].message.content or ""  # type: ignore[union-attr]
                    providers = {result.provider}  # type: ignore[union-attr]
    assert text == "Answered by Gemini." and providers == {"Gemini"}
    assert [a.error_type for a in result.attempts] == [
        "InternalServerError",
        "APIConnectionError",
        None,
    ]
    assert claude.requests[0].json["model"] == "claude-3-5-haiku-latest"
    assert claude.requests[0].json["messages"][0]["content"][1]["type"] == "image"
    assert claude.requests[0].json["tools"][0]["name"] == "weather"
    assert openai.requests[0].json["model"] == "gpt-4o-mini"
    assert gemini.requests[0].path.endswith("/gemini-2.0-flash:streamGenerateContent")
    assert "inlineData" in gemini.requests[0].json["contents"][0]["parts"][1]


async def test_vendor_model_names_route_to_their_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    """model="claude-..." goes to Anthropic and "gemini-..." to Gemini, listed or new."""
    async with AnthropicTestServer() as claude, GeminiTestServer() as gemini:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k-ant")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", "k-gem")
        monkeypatch.setenv("GEMINI_BASE_URL", gemini.base_url)
        async with AsyncClient() as client:
            a = await client.chat.completions.create(model="claude-opus-9", messages="hi")
            b = await client.chat.completions.create(model="gemini-9-pro", messages="hi")
    assert (a.provider, b.provider) == ("Anthropic", "Gemini")
    assert claude.requests[0].json["model"] == "claude-opus-9"


@pytest.mark.parametrize("vendor", ["Anthropic", "Gemini"])
async def test_the_gateway_serves_the_new_vendors(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`type = "Anthropic"` / `"Gemini"` in the gateway's config: answered in OpenAI's
    format, streamed and whole, with no code of the gateway's own for them."""
    import aiohttp

    from tests.test_gateway_serve import serving

    server_cls = AnthropicTestServer if vendor == "Anthropic" else GeminiTestServer
    async with server_cls(default=Reply(content="hello from upstream")) as upstream:
        monkeypatch.setenv("GW_VENDOR_KEY", "vendor-key-123456")
        config = {
            "server": {"port": 0},
            "providers": {
                "up": {
                    "type": vendor,
                    "base_url": upstream.base_url,
                    "api_key_env": "GW_VENDOR_KEY",
                }
            },
        }
        model = "claude-3-5-haiku-latest" if vendor == "Anthropic" else "gemini-2.0-flash"
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        async with serving(config) as url, aiohttp.ClientSession() as session:
            async with session.post(url + "/chat/completions", json=body) as r:
                whole = await r.json()
            async with session.post(url + "/chat/completions", json={**body, "stream": True}) as r:
                text = await r.text()
    assert "choices" in whole, whole
    assert whole["choices"][0]["message"]["content"] == "hello from upstream"
    assert "hello" in text and text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("vendor", ["Anthropic", "Gemini"])
def test_batch_runs_the_new_vendors(vendor: str, tmp_path: object) -> None:
    """`asyncprov batch --provider Anthropic|Gemini`: one result line per request."""
    import io
    import json
    from pathlib import Path

    from asyncprov.cli import main

    folder = Path(str(tmp_path))
    server = (AnthropicTestServer if vendor == "Anthropic" else GeminiTestServer)()
    source = folder / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}})
            + "\n"
            for i in range(3)
        )
    )  # fmt: skip
    target = folder / "out.jsonl"
    with server.run_in_thread():
        argv = [
            "batch",
            str(source),
            str(target),
            "--provider",
            vendor,
            "--base-url",
            server.base_url,
        ]
        assert main([*argv, "--api-key", "vendor-key-123456"], out=io.StringIO()) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    replies = {
        r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in lines
    }
    assert replies == {f"r{i}": f"You said: q{i}" for i in range(3)}
