"""Small providers and helpers shared by the tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aiohttp import web

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


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free 127.0.0.1 port, the way ``asyncprov serve`` runs it
    (handler cancellation on); returns the runner and the API root URL."""
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
