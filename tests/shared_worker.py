"""A process of the shared-state tests: ``python -m tests.shared_worker MODE ...``.

``load BASE_URL REDIS_URL NAMESPACE REQUESTS CONCURRENCY RPM``: send REQUESTS requests
(CONCURRENCY at a time) under a shared ``rpm``, then print ``done``.
``hold BASE_URL REDIS_URL NAMESPACE LEASE``: start two requests under a shared
concurrency of 2 with leases of LEASE seconds, print ``sent``, and wait to be killed.
``failover FIRST_URL REDIS_URL NAMESPACE SECOND_URL``: one call through
``RetryProvider([first, second])`` and print the name of the provider that answered.
"""

from __future__ import annotations

import sys

import anyio

from asyncprov import AsyncClient, RateLimit, SharedState
from asyncprov.providers import OpenAICompatible, RetryProvider

# The Redis timeout is generous (2 s) throughout: these processes test sharing, which a
# loaded machine must not turn into falling open.

NAME = "OpenAICompatible"


async def load(
    base_url: str, redis: str, namespace: str, total: int, width: int, rpm: float
) -> None:
    limits = {NAME: RateLimit(rpm=rpm)}
    shared = SharedState(redis, namespace=namespace, timeout=2.0)
    async with AsyncClient(base_url=base_url, rate_limits=limits, shared_state=shared) as client:
        left = iter(range(total))

        async def worker() -> None:
            for _ in left:
                await client.chat.completions.create(model="m", messages="hi")

        async with anyio.create_task_group() as tg:
            for _ in range(width):
                tg.start_soon(worker)
    print("done", flush=True)


async def hold(base_url: str, redis: str, namespace: str, lease: float) -> None:
    limits = {NAME: RateLimit(concurrency=2)}
    shared = SharedState(redis, namespace=namespace, timeout=2.0, lease=lease)
    client = AsyncClient(base_url=base_url, rate_limits=limits, shared_state=shared)
    async with client, anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(lambda: client.chat.completions.create(model="m", messages="hi"))
        print("sent", flush=True)


async def failover(first_url: str, redis: str, namespace: str, second_url: str) -> None:
    first, second = OpenAICompatible(base_url=first_url), OpenAICompatible(base_url=second_url)
    first.name, second.name = "first", "second"
    group = RetryProvider([first, second], shuffle=False)
    shared = SharedState(redis, namespace=namespace, timeout=2.0)
    async with AsyncClient(group, shared_state=shared) as client:
        reply = await client.chat.completions.create(model="m", messages="hi")
    print(reply.provider, flush=True)


def main(argv: list[str]) -> None:
    mode, base_url, redis, namespace, *rest = argv
    if mode == "load":
        total, width, rpm = int(rest[0]), int(rest[1]), float(rest[2])
        anyio.run(load, base_url, redis, namespace, total, width, rpm)
    elif mode == "failover":
        anyio.run(failover, base_url, redis, namespace, rest[0])
    else:
        anyio.run(hold, base_url, redis, namespace, float(rest[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
