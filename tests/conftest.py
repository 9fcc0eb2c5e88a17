"""Shared fixtures: an in-process OpenAI-compatible server and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from asyncprov import AsyncClient
from asyncprov.testing import OpenAITestServer

from .redis_server import URL_VARIABLE, RedisServer


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see keys or proxies from the developer's environment."""
    from asyncprov.providers import provider_class, provider_names

    names = {"ASYNCPROV_PROXY", "GOOGLE_API_KEY"}
    for provider in provider_names():
        cls = provider_class(provider)
        names.update(n for n in (cls.api_key_env, cls.base_url_env) if n)
    for name in names:
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


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: CI's (``ASYNCPROV_TEST_REDIS_URL``), else one started here."""
    import os

    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    redis = RedisServer()
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own (no budget left from another test), which it may stop
    and start again."""
    redis = RedisServer()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
