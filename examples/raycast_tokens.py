"""Seed example 3: stream plain text tokens from Raycast with the provider-level call.

Raycast is marked not working (its service changed), so it is never picked
automatically; chosen explicitly, as here, it runs and logs one warning. Offline by
default: a local server speaking Raycast's format is started and the provider is
pointed at it through RAYCAST_BASE_URL. To use the real service:

    ASYNCPROV_LIVE=1 RAYCAST_TOKEN=... python examples/raycast_tokens.py
"""

from __future__ import annotations

import logging
import os

from asyncprov.providers import Raycast
from asyncprov.testing import RaycastTestServer


def seed(token: str) -> None:
    msgs = [{"role": "user", "content": "Tell me a short joke about tokens."}]
    # The seed snippet, exactly as users write it.
    for token in Raycast.create_completion(model="gpt-4", messages=msgs, stream=True, auth=token):  # noqa: B020
        print(token, end="")
    print()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="[%(name)s %(levelname)s] %(message)s")
    if os.environ.get("ASYNCPROV_LIVE"):
        seed(os.environ["RAYCAST_TOKEN"])
        return
    joke = "Why did the token cross the stream? To reach the other delta."
    server = RaycastTestServer(api_key="local-raycast-token", replies=[joke])
    with server.run_in_thread():
        os.environ["RAYCAST_BASE_URL"] = server.base_url
        seed("local-raycast-token")
        body = server.requests[-1].json
        print(f"[local Raycast server: model={body['model']}, messages={body['messages']}]")


if __name__ == "__main__":
    main()
