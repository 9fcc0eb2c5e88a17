"""Bad input gets a clear typed error from asyncprov's hierarchy, before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anyio
import anyio.abc
import pytest
from aioresponses import aioresponses

from asyncprov import (
    APIConnectionError,
    AsyncClient,
    BadRequestError,
    ConfigurationError,
    ImageError,
    ImagesNotSupportedError,
    InvalidRequestError,
    MissingAuthError,
    ModelNotFoundError,
    ProviderError,
    ProviderNotFoundError,
    ResponseDecodeError,
)
from asyncprov.providers import OpenaiChat
from asyncprov.testing import OpenAITestServer, Reply
from tests.helpers import TextOnly


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"role": "wizard", "content": "hi"}], "messages.0.role"),
        ([{"role": "user"}], "needs 'content'"),
        ([{"role": "tool", "content": "42"}], "tool_call_id"),
        ([{"role": "user", "content": [{"type": "video", "url": "x"}]}], "content part type"),
        ([], "at least 1"),
        ([42], "messages.0"),
        (None, "messages is required"),
    ],
)
async def test_invalid_messages(
    client: AsyncClient, server: OpenAITestServer, messages: object, needle: str
) -> None:
    """Malformed messages raise InvalidRequestError naming the problem; nothing is sent."""
    with pytest.raises(InvalidRequestError) as caught:
        await client.chat.completions.create(model="m", messages=messages)  # type: ignore[arg-type]
    assert needle in str(caught.value)
    assert caught.value.__cause__ is None  # no pydantic error chained for the caller
    assert server.requests == []


async def test_invalid_option_type(client: AsyncClient, server: OpenAITestServer) -> None:
    """A wrongly typed option (temperature='hot') is refused before sending."""
    with pytest.raises(InvalidRequestError, match="temperature"):
        await client.chat.completions.create(model="m", messages="hi", temperature="hot")  # type: ignore[arg-type]
    assert server.requests == []


@pytest.mark.parametrize("image", [42, {"url": "x"}, b"not an image", "missing-file.png"])
async def test_bad_image(client: AsyncClient, server: OpenAITestServer, image: object) -> None:
    """An unsupported, unrecognisable or missing image raises ImageError; nothing is sent."""
    with pytest.raises(ImageError):
        await client.chat.completions.create(model="m", messages="hi", image=image)  # type: ignore[arg-type]
    assert server.requests == []


async def test_images_to_text_only_provider() -> None:
    """Images given to a provider that cannot take them raise instead of being dropped."""
    async with AsyncClient(TextOnly) as client:
        with pytest.raises(ImagesNotSupportedError, match="TextOnly"):
            await client.chat.completions.create(messages="hi", image="https://example.com/a.png")


async def test_unknown_provider_name() -> None:
    """An unknown provider name raises ProviderNotFoundError naming close matches."""
    with pytest.raises(ProviderNotFoundError, match="OpenaiChat"):
        AsyncClient(provider="OpenaiChatt")


async def test_unknown_model() -> None:
    """A model no provider serves raises ModelNotFoundError naming close matches."""
    async with AsyncClient() as client:
        with pytest.raises(ModelNotFoundError, match="gpt-4o"):
            await client.chat.completions.create(model="gpt-4oo", messages="hi")


async def test_no_model_no_provider() -> None:
    """A call with neither a model nor a provider explains what to pass."""
    async with AsyncClient() as client:
        with pytest.raises(ConfigurationError, match="model"):
            await client.chat.completions.create(messages="hi")


@pytest.mark.parametrize("stream", [False, True])
async def test_missing_key_before_any_request(server: OpenAITestServer, stream: bool) -> None:
    """A provider needing a key raises MissingAuthError naming the env var; nothing is sent."""
    async with AsyncClient(OpenaiChat(base_url=server.base_url)) as client:
        with pytest.raises(MissingAuthError, match="OPENAI_API_KEY"):
            await client.chat.completions.create(model="gpt-4o", messages="hi", stream=stream)
    assert server.requests == []


def test_bad_timeout() -> None:
    """A timeout that is not a positive number or Timeout is refused."""
    with pytest.raises(ConfigurationError, match="timeout"):
        AsyncClient(timeout=-1)


URL = "http://api.test/v1/chat/completions"


@pytest.fixture
async def edge_client() -> AsyncIterator[AsyncClient]:
    async with AsyncClient(base_url="http://api.test/v1", max_retries=0) as client:
        yield client


@pytest.mark.parametrize("stream", [False, True])
async def test_wrong_shape_json_is_decode_error(
    client: AsyncClient, server: OpenAITestServer, stream: bool
) -> None:
    """A JSON 200 that is not a completion raises ResponseDecodeError with a snippet."""
    server.add_reply(Reply(raw=b'{"unexpected": true}'))
    with pytest.raises(ResponseDecodeError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=stream)
    assert caught.value.status == 200 and "unexpected" in caught.value.body


async def test_non_json_200_is_decode_error(client: AsyncClient, server: OpenAITestServer) -> None:
    """A 200 labelled JSON whose body is not JSON raises ResponseDecodeError."""
    server.add_reply(Reply(raw=b"<<not json>>"))
    with pytest.raises(ResponseDecodeError) as caught:
        await client.chat.completions.create(model="m", messages="hi")
    assert "<<not json>>" in caught.value.body


@pytest.mark.parametrize("stream", [False, True])
async def test_error_object_in_200_is_provider_error(
    client: AsyncClient, server: OpenAITestServer, stream: bool
) -> None:
    """A 200 whose JSON is an error object raises ProviderError with its message."""
    server.add_reply(Reply(raw=b'{"error": {"message": "quota", "type": "insufficient_quota"}}'))
    with pytest.raises(ProviderError) as caught:
        await client.chat.completions.create(model="m", messages="hi", stream=stream)
    assert caught.value.message == "quota" and caught.value.error_type == "insufficient_quota"


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "reset"),
        aiohttp.ClientPayloadError("cut"),
        ConnectionResetError("reset"),
    ],
)
async def test_aiohttp_errors_are_translated(edge_client: AsyncClient, exc: Exception) -> None:
    """aiohttp and socket exceptions become APIConnectionError, keeping the original as cause."""
    with aioresponses() as mocked:
        mocked.post(URL, exception=exc)
        with pytest.raises(APIConnectionError) as caught:
            await edge_client.chat.completions.create(model="m", messages="hi")
    assert caught.value.__cause__ is exc


async def test_base_url_credentials_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    """Credentials inside a base_url stay out of reprs and log lines."""
    import logging

    caplog.set_level(logging.DEBUG, logger="asyncprov")
    async with AsyncClient(base_url="http://user:pw-SECRET@127.0.0.1:9/v1") as client:
        assert "pw-SECRET" not in repr(client)
        with pytest.raises(APIConnectionError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert "pw-SECRET" not in str(caught.value) and "pw-SECRET" not in caplog.text


def test_class_attribute_access_does_not_instantiate() -> None:
    """Looking at create_completion on a class needing configuration is harmless."""
    import inspect

    from asyncprov.providers import OpenAICompatible

    assert hasattr(OpenAICompatible, "create_completion")
    assert dict(inspect.getmembers(OpenAICompatible))["create_completion"].__doc__
    with pytest.raises(ConfigurationError, match="base_url"):
        next(OpenAICompatible.create_completion(model="m", messages="hi"))


async def test_large_error_body_keeps_snippet(
    client: AsyncClient, server: OpenAITestServer
) -> None:
    """An error body over 64 KiB still gives a typed error with a body snippet."""
    server.add_reply(Reply(raw=b"<html>" + b"x" * 100_000, status=400, content_type="text/html"))
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages="hi")
    assert caught.value.body.startswith("<html>xxx")


@pytest.mark.parametrize(
    ("options", "needle"),
    [({"metadata": object()}, "cannot be sent as JSON"), ({"temperature": float("nan")}, "finite")],
)
async def test_unsendable_values(
    client: AsyncClient, server: OpenAITestServer, options: dict[str, object], needle: str
) -> None:
    """Values that cannot be JSON (objects, NaN) raise InvalidRequestError; nothing is sent."""
    with pytest.raises(InvalidRequestError, match=needle):
        await client.chat.completions.create(model="m", messages="hi", **options)  # type: ignore[arg-type]
    assert server.requests == []


async def test_key_whitespace_stripped_and_line_breaks_refused(server: OpenAITestServer) -> None:
    """A key read from a file loses its trailing newline; one with an inner break is refused."""
    async with AsyncClient(base_url=server.base_url, api_key="sk-file-key\n") as client:
        await client.chat.completions.create(model="m", messages="hi")
        assert server.requests[-1].headers["Authorization"] == "Bearer sk-file-key"
        with pytest.raises(ConfigurationError, match="line break"):
            await client.chat.completions.create(model="m", messages="hi", api_key="sk-a\nb")


@pytest.mark.parametrize(
    "url", ["localhost:1/v1", "ftp://127.0.0.1/v1", "http://127.0.0.1:99999/v1", "http:///v1"]
)
def test_bad_base_url(url: str) -> None:
    """A base_url that is not an http(s) URL with a host is refused at once."""
    with pytest.raises(ConfigurationError, match="base_url"):
        AsyncClient(base_url=url)


def test_bad_proxy_port() -> None:
    """A malformed proxy port is a ConfigurationError that hides the credentials."""
    with pytest.raises(ConfigurationError) as caught:
        AsyncClient(proxy="http://user:pw-x@127.0.0.1:abc")
    assert "pw-x" not in str(caught.value)


async def test_kept_cause_has_no_credentials() -> None:
    """The aiohttp error kept as __cause__ no longer carries the Authorization header."""

    async def broken_chunked(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, broken_chunked)
        url = f"http://127.0.0.1:{port}/v1"
        async with AsyncClient(base_url=url, api_key="sk-TOPSECRET") as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.chat.completions.create(model="m", messages="hi", stream=True)
        tg.cancel_scope.cancel()
    assert caught.value.__cause__ is not None
    assert "TOPSECRET" not in repr(caught.value.__cause__)
    assert "TOPSECRET" not in str(caught.value)
