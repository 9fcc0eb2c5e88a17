"""Failover, offline: three local providers (flaky, slow, healthy) behind RetryProvider.

Shows sequential failover, hedged attempts and cool-down, and prints who answered each
request and how long the first token took.

    python examples/failover.py
"""

from __future__ import annotations

import asyncio
import time

from asyncprov import AsyncClient, InternalServerError, Timeout
from asyncprov.providers import OpenAICompatible, RetryProvider
from asyncprov.testing import OpenAITestServer, Reply


async def first_token(client: AsyncClient, label: str, provider: RetryProvider) -> None:
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="demo", messages=label, stream=True, provider=provider
    )
    ttft = time.monotonic() - started
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream])
    print(
        f"{label:<28} answered by {stream.provider:<8} first token after {ttft * 1000:6.0f} ms"
        f"  {text!r}"
    )


async def main() -> None:
    flaky = OpenAITestServer(default=Reply(status=503, error={"message": "overloaded"}))
    slow = OpenAITestServer(default=Reply(content="slow but sure", delay=1.0))
    healthy = OpenAITestServer(default=Reply(content="fast and healthy"))
    async with flaky, slow, healthy:
        providers = [
            OpenAICompatible(base_url=flaky.base_url, name="flaky"),
            OpenAICompatible(base_url=slow.base_url, name="slow"),
            OpenAICompatible(base_url=healthy.base_url, name="healthy"),
        ]
        sequential = RetryProvider(providers, shuffle=False)
        hedged = RetryProvider(providers, shuffle=False, hedge=True, hedge_delay=0.2)

        async with AsyncClient() as client:  # provider health lives on the client
            for n in range(4):  # flaky cools down after three failures in a row
                await first_token(client, f"sequential #{n + 1}", sequential)
            await first_token(client, "hedged (delay 0.2 s)", hedged)

        only_flaky = RetryProvider([providers[0]], single_provider_retry=True, max_retries=2)
        async with AsyncClient(only_flaky, timeout=Timeout(total=10)) as client:
            try:
                await client.chat.completions.create(model="demo", messages="hi")
            except InternalServerError as error:  # every attempt failed the same way
                print(f"\nwhen every attempt fails alike you get {type(error).__name__}:")
                print(error, *error.__notes__, sep="\n")
        print(
            f"\nrequests seen: flaky={len(flaky.requests)} slow={len(slow.requests)} "
            f"healthy={len(healthy.requests)}"
        )


if __name__ == "__main__":
    asyncio.run(main())
