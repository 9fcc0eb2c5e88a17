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
