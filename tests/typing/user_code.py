"""Checked by mypy in CI (not run): the types a user sees from the public API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

from asyncprov import AsyncClient, AsyncStream, ChatCompletion, ChatCompletionChunk, Client, Stream
from asyncprov.providers import OpenaiChat


async def async_user(client: AsyncClient, flag: bool) -> None:
    assert_type(await client.chat.completions.create(model="m", messages="hi"), ChatCompletion)
    stream = await client.chat.completions.create(model="m", messages="hi", stream=True)
    assert_type(stream, AsyncStream)
    async for chunk in stream:
        assert_type(chunk, ChatCompletionChunk)
        assert_type(chunk.choices[0].delta.content, str | None)
    either = await client.chat.completions.create(model="m", messages="hi", stream=flag)
    assert_type(either, ChatCompletion | AsyncStream)
    assert_type(OpenaiChat.create_async_generator(model="m", messages="hi"), AsyncIterator[str])


def sync_user(client: Client) -> None:
    assert_type(client.chat.completions.create(model="m", messages="hi"), ChatCompletion)
    stream = client.chat.completions.create(model="m", messages="hi", stream=True)
    assert_type(stream, Stream)
    for chunk in stream:
        assert_type(chunk, ChatCompletionChunk)
    assert_type(OpenaiChat.create_completion(model="m", messages="hi"), Iterator[str])
