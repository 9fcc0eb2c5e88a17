"""Quickstart: stream a chat completion, async and sync, with no network and no key.

Starts asyncprov's local OpenAI-compatible test server on 127.0.0.1 and talks to it
exactly as you would talk to any OpenAI-compatible service. Run:

    python examples/quickstart.py
"""

from __future__ import annotations

import asyncio

from asyncprov import AsyncClient, Client
from asyncprov.testing import OpenAITestServer, Reply

REPLY = "Streaming works: every token arrives as soon as the server sends it."


async def async_quickstart() -> None:
    server = OpenAITestServer(replies=[REPLY, "And this one came back whole."])
    async with server, AsyncClient(base_url=server.base_url) as client:
        print("async stream:  ", end="")
        stream = await client.chat.completions.create(
            model="test-model",
            messages=[{"role": "user", "content": "Say something."}],
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print(f"   [answered by {stream.provider}]")

        reply = await client.chat.completions.create(model="test-model", messages="Hi!")
        print("async reply:   ", reply.choices[0].message.content)
        print("usage:         ", reply.usage)


def sync_quickstart() -> None:
    server = OpenAITestServer(replies=[Reply(content="The sync client streams too.")])
    with server.run_in_thread(), Client(base_url=server.base_url) as client:
        print("sync stream:   ", end="")
        for chunk in client.chat.completions.create(
            model="test-model", messages="Say something.", stream=True
        ):
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()


if __name__ == "__main__":
    asyncio.run(async_quickstart())
    sync_quickstart()
