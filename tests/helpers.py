"""Small providers and helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from asyncprov._http import HttpCall
from asyncprov._types import ChatCompletionChunk, ChatRequest
from asyncprov.providers import Provider


class TextOnly(Provider):
    """A provider that cannot take images (for the images check)."""

    base_url = "http://127.0.0.1:9"
    default_model = "t"

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        raise AssertionError("must not be called")
        yield  # pragma: no cover
