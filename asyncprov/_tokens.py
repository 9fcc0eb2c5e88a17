"""Provider-level convenience calls: ``Provider.create_completion`` (sync tokens) and
``Provider.create_async_generator`` (async tokens), built on the public clients."""

from __future__ import annotations

import atexit
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._client import AsyncClient
from ._request import MessagesInput
from ._sync import Client
from .providers.base import Provider

__all__ = ["create_async_generator", "create_completion"]

_lock = threading.Lock()
_shared: list[Client] = []


def _shared_client() -> Client:
    # One loop thread and connection pool for every provider-level sync call in the
    # process, rather than a new event loop per call. It holds no per-call state.
    with _lock:
        if not _shared:
            _shared.append(Client())
            atexit.register(_shared[0].close)
        return _shared[0]


def _tokens_kwargs(
    provider: Provider, model: str | None, proxy: str | None, auth: str | None
) -> dict[str, Any]:
    return {"provider": provider, "model": model, "proxy": proxy, "api_key": auth}


def create_completion(
    provider: Provider,
    model: str | None,
    messages: MessagesInput | None,
    *,
    stream: bool = True,
    proxy: str | None = None,
    auth: str | None = None,
    **kwargs: Any,
) -> Iterator[str]:
    """Yield the reply's text tokens (the whole text once when ``stream=False``)."""
    completions = _shared_client().chat.completions
    options = _tokens_kwargs(provider, model, proxy, auth) | kwargs
    if not stream:
        reply = completions.create(messages=messages, stream=False, **options)
        yield reply.choices[0].message.content or ""
        return
    with completions.create(messages=messages, stream=True, **options) as chunks:
        for chunk in chunks:
            if chunk.choices and (text := chunk.choices[0].delta.content):
                yield text


async def create_async_generator(
    provider: Provider,
    model: str | None,
    messages: MessagesInput | None,
    *,
    stream: bool = True,
    proxy: str | None = None,
    auth: str | None = None,
    **kwargs: Any,
) -> AsyncIterator[str]:
    """Yield the reply's text tokens asynchronously."""
    options = _tokens_kwargs(provider, model, proxy, auth) | kwargs
    async with AsyncClient() as client:
        if not stream:
            reply = await client.chat.completions.create(messages=messages, stream=False, **options)
            yield reply.choices[0].message.content or ""
            return
        async with await client.chat.completions.create(
            messages=messages, stream=True, **options
        ) as chunks:
            async for chunk in chunks:
                if chunk.choices and (text := chunk.choices[0].delta.content):
                    yield text
