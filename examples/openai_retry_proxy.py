"""Seed example 2: the sync Client through an authenticating proxy, retrying OpenAI.

Offline by default: starts a local OpenAI-compatible server (its first answer is a 503,
so you can see the retry) and a local HTTP proxy that requires credentials, and points
OpenaiChat at the server through OPENAI_BASE_URL. To use the real service and your proxy:

    ASYNCPROV_LIVE=1 OPENAI_API_KEY=... ASYNCPROV_PROXY=http://user:pw@host:port \\
        python examples/openai_retry_proxy.py
"""

from __future__ import annotations

import logging
import os

from asyncprov import Client
from asyncprov.providers import OpenaiChat, RetryProvider
from asyncprov.testing import OpenAITestServer, ProxyServer, Reply

msgs = [{"role": "user", "content": "Name three rivers in Europe."}]


def seed(proxy_url: str) -> None:
    # The seed snippet, exactly as users write it (with a real proxy URL in place of
    # "http://user:pw@host:port").
    client = Client(
        proxies={"https": proxy_url},
        provider=RetryProvider([OpenaiChat], single_provider_retry=True, max_retries=5),
    )
    for chunk in client.chat.completions.create(model="gpt-3.5-turbo", messages=msgs, stream=True):
        print(chunk.choices[0].delta.content or "", end="")
    print()
    client.close()


def main() -> None:
    logging.basicConfig(format="[%(name)s %(levelname)s] %(message)s")
    logging.getLogger("asyncprov").setLevel(logging.DEBUG)  # shows each attempt
    if os.environ.get("ASYNCPROV_LIVE"):
        seed(os.environ["ASYNCPROV_PROXY"])
        return
    server = OpenAITestServer(
        replies=[
            Reply(status=503, error={"message": "overloaded, try again"}),
            Reply(content="The Danube, the Rhine and the Loire."),
        ],
    )
    proxy = ProxyServer(username="user", password="pw")
    with server.run_in_thread(), proxy.run_in_thread():
        os.environ["OPENAI_BASE_URL"] = server.base_url
        os.environ["OPENAI_API_KEY"] = "sk-local-example"
        seed(proxy.url_with_auth())
        seen = [(r.method, r.username) for r in proxy.requests]
        print(f"[local proxy saw {len(proxy.requests)} requests, with credentials: {seen}]")
        print(f"[local OpenAI server saw {len(server.requests)} attempts]")


if __name__ == "__main__":
    main()
