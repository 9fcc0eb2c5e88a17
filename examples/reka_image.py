"""Seed example 1: ask Reka what is in an image, streaming the answer.

Offline by default: a local server speaking Reka's (OpenAI-compatible) API is started
and the Reka provider is pointed at it through REKA_BASE_URL. To use the real service:

    ASYNCPROV_LIVE=1 REKA_API_KEY=... python examples/reka_image.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from asyncprov import AsyncClient
from asyncprov.providers import Reka
from asyncprov.testing import OpenAITestServer


async def seed() -> None:
    # The seed snippet, exactly as users write it.
    async with AsyncClient(provider=Reka) as client:  # key from REKA_API_KEY
        stream = await client.chat.completions.create(
            model="reka-core",
            messages=[{"role": "user", "content": "What is in the image?"}],
            stream=True,
            image=open("cat.jpeg", "rb"),  # noqa: ASYNC230, SIM115 (the seed's own line)
        )
        async for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="")
    print()


async def main() -> None:
    os.chdir(Path(__file__).parent)  # the snippet opens cat.jpeg beside this file
    if os.environ.get("ASYNCPROV_LIVE"):
        await seed()
        return
    reply = "A cartoon cat's face: brown fur, pointed ears and two green eyes."
    async with OpenAITestServer(api_key="local-reka-key", replies=[reply]) as server:
        os.environ["REKA_BASE_URL"] = server.base_url
        os.environ["REKA_API_KEY"] = "local-reka-key"
        await seed()
        request = server.requests[-1]
        parts = request.json["messages"][-1]["content"]
        images = [p["image_url"]["url"][:23] for p in parts if p["type"] == "image_url"]
        print(f"[local Reka server: model={request.json['model']}, images={images}]")


if __name__ == "__main__":
    asyncio.run(main())
