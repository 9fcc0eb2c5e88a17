"""Raycast's AI chat backend: its own request body and a ``data: {"text": ...}`` stream."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .._http import HttpCall
from .._types import ChatCompletionChunk, ChatRequest, ChunkChoice, Delta
from .base import Provider

__all__ = ["Raycast"]

_ids = itertools.count(1)


class _RaycastEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    finish_reason: str | None = None


def _map_request(request: ChatRequest, model: str) -> dict[str, Any]:
    return {
        "messages": [
            {"author": message.role, "content": {"text": message.text()}}
            for message in request.messages
        ],
        "model": model,
        "provider": "openai",
        "source": "ai_chat",
        "system_instruction": "markdown",
        "temperature": 0.5 if request.temperature is None else request.temperature,
        "locale": "en-US",
        "debug": False,
    }


class Raycast(Provider):
    """Raycast AI. Marked not working (the service changed): it is never picked by
    model routing, and runs only when chosen explicitly.

    The token comes from ``auth=`` (or ``api_key=``) or ``RAYCAST_TOKEN``. The stream
    has no terminator: it is complete when the body ends cleanly, and interrupted when
    the body is cut.
    """

    url = "https://raycast.com"
    base_url = "https://backend.raycast.com/api/v1"
    working = False
    needs_auth = True
    api_key_env = "RAYCAST_TOKEN"
    base_url_env = "RAYCAST_BASE_URL"
    default_model = "gpt-3.5-turbo"
    models = ("gpt-3.5-turbo", "gpt-4")

    def __init__(
        self,
        *,
        auth: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(api_key=api_key or auth, base_url=base_url, proxy=proxy, headers=headers)

    async def stream(
        self, request: ChatRequest, http: HttpCall
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        token = self.require_api_key()
        model = self.resolve_model(request.model)
        headers = {
            **self.headers,
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",  # as Raycast's own client sends
        }
        url = f"{self.base_url}/ai/chat_completions"
        chunk_id = f"raycast-{next(_ids)}"
        created = int(time.time())
        name = self.name
        first = True
        async with http.post(url, body=_map_request(request, model), headers=headers) as resp:
            # No terminator: a clean end of the body ends the stream (a cut one raises).
            async for events in resp.events(None):
                for event in events:
                    try:
                        parsed = _RaycastEvent.model_validate_json(event.data)
                    except ValidationError as exc:
                        raise resp.decode_error(event.data, expected="Raycast event") from exc
                    if parsed.text is None and parsed.finish_reason is None:
                        continue
                    delta = Delta(content=parsed.text, role="assistant" if first else None)
                    first = False
                    yield ChatCompletionChunk(
                        id=chunk_id,
                        created=created,
                        model=model,
                        choices=[ChunkChoice(delta=delta, finish_reason=parsed.finish_reason)],
                        provider=name,
                    )
