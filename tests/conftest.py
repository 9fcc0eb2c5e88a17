"""Shared fixtures: an in-process OpenAI-compatible server and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asyncprov import AsyncClient
from asyncprov.testing import OpenAITestServer


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see keys or proxies from the developer's environment."""
    names = ("OPENAI_API_KEY", "REKA_API_KEY", "RAYCAST_TOKEN", "ASYNCPROV_PROXY")
    for name in (*names, "OPENAI_BASE_URL", "REKA_BASE_URL", "RAYCAST_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server() -> AsyncIterator[OpenAITestServer]:
    async with OpenAITestServer() as srv:
        yield srv


@pytest.fixture
async def client(server: OpenAITestServer) -> AsyncIterator[AsyncClient]:
    """A client making one attempt per call, so a scripted reply is what the call sees
    (retries have tests of their own)."""
    async with AsyncClient(base_url=server.base_url, max_retries=0) as c:
        yield c
