"""Reka and Raycast against local servers speaking their wire formats."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncprov import (
    AsyncClient,
    AuthenticationError,
    ImagesNotSupportedError,
    InternalServerError,
    MissingAuthError,
    RateLimitError,
    ResponseDecodeError,
    StreamInterruptedError,
)
from asyncprov._registry import provider_for_model
from asyncprov.providers import OpenaiChat, Raycast, Reka
from asyncprov.testing import OpenAITestServer, RaycastTestServer, Reply

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20
JPEG_URL = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()


@pytest.fixture
async def reka_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenAITestServer]:
    async with OpenAITestServer(api_key="reka-local") as server:
        monkeypatch.setenv("REKA_BASE_URL", server.base_url)
        monkeypatch.setenv("REKA_API_KEY", "reka-local")
        yield server


@pytest.fixture
async def raycast_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RaycastTestServer]:
    async with RaycastTestServer(api_key="rc-token") as server:
        monkeypatch.setenv("RAYCAST_BASE_URL", server.base_url)
        yield server


# --- Reka ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_reka_request_and_image(reka_server: OpenAITestServer, stream: bool) -> None:
    """Reka gets X-Api-Key auth, model reka-core and the image as a data-URL part."""
    async with AsyncClient(provider=Reka) as client:
        result = await client.chat.completions.create(
            model="reka-core",
            messages=[{"role": "user", "content": "What is in the image?"}],
            stream=stream,
            image=JPEG,
        )
        if stream:
            text = "".join([c.choices[0].delta.content or "" async for c in result])  # type: ignore[union-attr]
        else:
            text = result.choices[0].message.content  # type: ignore[union-attr]
    assert text == "You said: What is in the image?"
    request = reka_server.requests[-1]
    assert request.headers["X-Api-Key"] == "reka-local"
    assert "Authorization" not in request.headers
    assert request.json["model"] == "reka-core"
    assert request.json["messages"][-1]["content"] == [
        {"type": "text", "text": "What is in the image?"},
        {"type": "image_url", "image_url": {"url": JPEG_URL}},
    ]


async def test_reka_routes_by_model_name(reka_server: OpenAITestServer) -> None:
    """model="reka-core" with no provider goes to Reka."""
    async with AsyncClient() as client:
        reply = await client.chat.completions.create(model="reka-core", messages="hi")
    assert reply.provider == "Reka"
    assert reka_server.requests[-1].headers["X-Api-Key"] == "reka-local"


async def test_reka_default_model(reka_server: OpenAITestServer) -> None:
    """Without a model, Reka uses reka-core."""
    async with AsyncClient(Reka) as client:
        await client.chat.completions.create(messages="hi")
    assert reka_server.requests[-1].json["model"] == "reka-core"


async def test_reka_missing_key(
    reka_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key for Reka raises MissingAuthError naming REKA_API_KEY; nothing is sent."""
    monkeypatch.delenv("REKA_API_KEY")
    async with AsyncClient(Reka) as client:
        with pytest.raises(MissingAuthError, match="REKA_API_KEY"):
            await client.chat.completions.create(messages="hi", stream=True)
    assert reka_server.requests == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            Reply(status=401, error={"type": "authentication_error", "message": "bad key"}),
            AuthenticationError,
        ),
        (Reply(status=429, headers={"retry-after": "3"}), RateLimitError),
        (Reply(status=500, error={"type": "server_error", "message": "oops"}), InternalServerError),
    ],
)
async def test_reka_status_errors(reka_server: OpenAITestServer, reply: Reply, error: type) -> None:
    """Reka's error statuses are typed, name the provider and keep Retry-After."""
    reka_server.add_reply(reply)
    async with AsyncClient(Reka, max_retries=0) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(messages="hi", stream=True)
    assert caught.value.provider == "Reka" and caught.value.status == reply.status
    if reply.status == 429:
        assert caught.value.retry_after == 3.0


async def test_reka_interrupted(reka_server: OpenAITestServer) -> None:
    """A Reka stream cut short raises StreamInterruptedError with the partial text."""
    reka_server.add_reply(Reply(content="a b c d", fault="truncate", fault_after=2))
    async with AsyncClient(Reka) as client:
        stream = await client.chat.completions.create(messages="hi", stream=True)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
    assert caught.value.partial_text == "a b " and caught.value.provider == "Reka"


async def test_reka_reasoning_content(reka_server: OpenAITestServer) -> None:
    """Research models' delta.reasoning_content is kept on chunks and folded."""
    body = (
        b'data: {"choices":[{"index":0,"delta":{"role":"assistant",'
        b'"reasoning_content":"think"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"content":"answer"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    reka_server.add_reply(Reply(raw=body, content_type="text/event-stream"))
    async with AsyncClient(Reka) as client:
        stream = await client.chat.completions.create(messages="hi", stream=True)
        completion = await stream.collect()
    assert completion.choices[0].message.reasoning_content == "think"
    assert completion.choices[0].message.content == "answer"


# --- Raycast ------------------------------------------------------------------------


async def test_raycast_request_shape(raycast_server: RaycastTestServer) -> None:
    """Raycast gets its own body (author/content.text, provider, source, ...) and headers."""
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        stream = await client.chat.completions.create(
            model="gpt-4",
            messages=[
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "hi there"},
            ],
            stream=True,
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: hi there"
    assert {c.provider for c in chunks} == {"Raycast"}
    assert chunks[0].choices[0].delta.role == "assistant"
    request = raycast_server.requests[-1]
    assert request.path == "/api/v1/ai/chat_completions"
    assert request.json == {
        "messages": [
            {"author": "system", "content": {"text": "be nice"}},
            {"author": "user", "content": {"text": "hi there"}},
        ],
        "model": "gpt-4",
        "provider": "openai",
        "source": "ai_chat",
        "system_instruction": "markdown",
        "temperature": 0.5,
        "locale": "en-US",
        "debug": False,
    }
    assert request.headers["Authorization"] == "Bearer rc-token"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("how", ["auth", "api_key", "env"])
async def test_raycast_token_sources(
    raycast_server: RaycastTestServer, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token comes from auth=, api_key= or RAYCAST_TOKEN."""
    if how == "env":
        monkeypatch.setenv("RAYCAST_TOKEN", "rc-token")
        provider = Raycast()
    else:
        provider = Raycast(**{how: "rc-token"})  # type: ignore[arg-type]
    async with AsyncClient(provider) as client:
        reply = await client.chat.completions.create(messages="hi")
    assert reply.choices[0].message.content == "You said: hi"
    assert raycast_server.requests[-1].headers["Authorization"] == "Bearer rc-token"


async def test_raycast_missing_token(raycast_server: RaycastTestServer) -> None:
    """No token raises MissingAuthError naming RAYCAST_TOKEN before any request."""
    async with AsyncClient(Raycast) as client:
        with pytest.raises(MissingAuthError, match="RAYCAST_TOKEN"):
            await client.chat.completions.create(messages="hi", stream=True)
    assert raycast_server.requests == []


async def test_raycast_clean_end_is_complete_without_inventing(
    raycast_server: RaycastTestServer,
) -> None:
    """A clean end of body completes the stream; no finish_reason appears that was not sent."""
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        completion = await client.chat.completions.create(messages="one two")
    assert completion.choices[0].message.content == "You said: one two"
    assert completion.choices[0].finish_reason is None


async def test_raycast_finish_reason_from_newer_servers(raycast_server: RaycastTestServer) -> None:
    """A finish_reason on the last event (newer servers) is passed on."""
    raycast_server.send_finish_reason = True
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        completion = await client.chat.completions.create(messages="one two")
    assert completion.choices[0].finish_reason == "stop"


async def test_raycast_cut_body_is_interrupted(raycast_server: RaycastTestServer) -> None:
    """A Raycast body cut short raises StreamInterruptedError with the partial text."""
    raycast_server.add_reply(Reply(content="a b c d", fault="truncate", fault_after=2))
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        stream = await client.chat.completions.create(messages="hi", stream=True)
        with pytest.raises(StreamInterruptedError) as caught:
            async for _ in stream:
                pass
    assert caught.value.partial_text == "a b "


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (429, RateLimitError), (503, InternalServerError)],
)
async def test_raycast_status_errors(
    raycast_server: RaycastTestServer, status: int, error: type
) -> None:
    """Raycast's error statuses are typed and name the provider."""
    raycast_server.add_reply(Reply(status=status))
    async with AsyncClient(Raycast(auth="rc-token"), max_retries=0) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(messages="hi", stream=True)
    assert caught.value.provider == "Raycast"


async def test_raycast_empty_or_json_body_is_decode_error(
    raycast_server: RaycastTestServer,
) -> None:
    """A 200 without Raycast events is never an empty 'complete' reply: an empty body is
    a stream cut before any event (retryable), other JSON a decode error."""
    raycast_server.add_reply(Reply(raw=b"", content_type="text/event-stream"))
    raycast_server.add_reply(Reply(raw=b'{"unexpected": 1}'))
    async with AsyncClient(Raycast(auth="rc-token"), max_retries=0) as client:
        with pytest.raises(StreamInterruptedError, match="before any event"):
            await client.chat.completions.create(messages="hi")
        with pytest.raises(ResponseDecodeError) as caught:
            await client.chat.completions.create(messages="hi")
    assert caught.value.status == 200 and "unexpected" in caught.value.body


async def test_raycast_refuses_images(raycast_server: RaycastTestServer) -> None:
    """Raycast cannot take images: a clear error instead of dropping them."""
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        with pytest.raises(ImagesNotSupportedError, match="Raycast"):
            await client.chat.completions.create(messages="hi", image=JPEG)


def test_raycast_never_picked_by_routing() -> None:
    """Model routing skips Raycast (working = False) for the models it shares with OpenaiChat."""
    assert Raycast.working is False
    for model in Raycast.models:
        assert isinstance(provider_for_model(model), OpenaiChat)


async def test_raycast_explicit_use_warns_once(
    raycast_server: RaycastTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Chosen explicitly, Raycast runs, with one warning that it is marked not working."""
    caplog.set_level(logging.WARNING, logger="asyncprov")
    async with AsyncClient(Raycast(auth="rc-token")) as client:
        for _ in range(3):
            await client.chat.completions.create(messages="hi")
    warnings = [r for r in caplog.records if "not working" in r.getMessage()]
    assert len(warnings) == 1 and "Raycast" in warnings[0].getMessage()
    assert "rc-token" not in caplog.text


def test_raycast_create_completion_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's Raycast.create_completion(..., auth=token) yields str tokens."""
    server = RaycastTestServer(api_key="rc-token")
    with server.run_in_thread():
        monkeypatch.setenv("RAYCAST_BASE_URL", server.base_url)
        msgs = [{"role": "user", "content": "tell me"}]
        tokens = list(
            Raycast.create_completion(model="gpt-4", messages=msgs, stream=True, auth="rc-token")
        )
    assert tokens == ["You ", "said: ", "tell ", "me"]
    assert server.requests[-1].json["model"] == "gpt-4"


async def test_reka_every_image_form(reka_server: OpenAITestServer, tmp_path: Path) -> None:
    """File object, bytes, path, data URI and URL all reach Reka as image parts, in order."""
    path = tmp_path / "cat.jpeg"
    path.write_bytes(JPEG)
    with path.open("rb") as handle:
        async with AsyncClient(Reka) as client:
            await client.chat.completions.create(
                messages="two cats?",
                image=handle,
                images=[JPEG, path, (str(path), "named"), JPEG_URL, "https://example.com/c.jpg"],
            )
        assert not handle.closed
    parts = reka_server.requests[-1].json["messages"][-1]["content"]
    assert [p["image_url"]["url"] for p in parts[1:]] == [JPEG_URL] * 5 + [
        "https://example.com/c.jpg"
    ]


async def test_provider_shim_inside_running_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raycast.create_completion (sync) works when called from a running event loop."""
    server = RaycastTestServer(api_key="rc-token")
    with server.run_in_thread():
        monkeypatch.setenv("RAYCAST_BASE_URL", server.base_url)
        tokens = list(Raycast.create_completion(messages="in loop", auth="rc-token"))
    assert "".join(tokens) == "You said: in loop"
