"""Every request of a client goes through its proxy, with credentials that never leak."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from anyio.from_thread import start_blocking_portal

from asyncprov import AsyncClient, Client, ConfigurationError, ProxyError
from asyncprov.testing import OpenAITestServer, ProxyServer

SECRET = "s3cr3t-pw"


@pytest.fixture
async def proxy() -> AsyncIterator[ProxyServer]:
    async with ProxyServer(username="alice", password=SECRET) as p:
        yield p


@pytest.mark.parametrize("how", ["proxy", "proxies", "env"])
async def test_requests_go_through_proxy_with_credentials(
    server: OpenAITestServer, proxy: ProxyServer, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proxy=, proxies={...} and ASYNCPROV_PROXY each route every request through the proxy."""
    url = proxy.url_with_auth()
    kwargs: dict[str, object] = {}
    if how == "proxy":
        kwargs["proxy"] = url
    elif how == "proxies":
        kwargs["proxies"] = {"http": url, "https": url}
    else:
        monkeypatch.setenv("ASYNCPROV_PROXY", url)
    async with AsyncClient(base_url=server.base_url, **kwargs) as client:  # type: ignore[arg-type]
        stream = await client.chat.completions.create(model="m", messages="via proxy", stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        reply = await client.chat.completions.create(model="m", messages="again")
    assert text == "You said: via proxy"
    assert reply.choices[0].message.content == "You said: again"
    assert [(r.method, r.username, r.password) for r in proxy.requests] == [
        ("POST", "alice", SECRET),
        ("POST", "alice", SECRET),
    ]
    assert proxy.requests[0].target == f"{server.base_url}/chat/completions"
    assert "Proxy-Authorization" not in server.requests[0].headers


async def test_per_call_proxy(server: OpenAITestServer, proxy: ProxyServer) -> None:
    """proxy= on one call routes only that call through the proxy."""
    async with AsyncClient(base_url=server.base_url) as client:
        await client.chat.completions.create(model="m", messages="direct")
        await client.chat.completions.create(
            model="m", messages="proxied", proxy=proxy.url_with_auth()
        )
    assert len(server.requests) == 2 and len(proxy.requests) == 1


async def test_wrong_proxy_credentials_are_proxy_error(
    server: OpenAITestServer, proxy: ProxyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused proxy credentials give ProxyError; no message, repr or log shows them."""
    caplog.set_level(logging.DEBUG, logger="asyncprov")
    bad = proxy.url.replace("http://", "http://alice:wrong-pw-123@")
    async with AsyncClient(base_url=server.base_url, proxy=bad) as client:
        assert "wrong-pw-123" not in repr(client)
        with pytest.raises(ProxyError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert "wrong-pw-123" not in str(caught.value)
    assert "wrong-pw-123" not in caplog.text
    assert server.requests == []


async def test_unreachable_proxy_is_proxy_error(server: OpenAITestServer) -> None:
    """A proxy that is not listening gives ProxyError without the password."""
    async with AsyncClient(
        base_url=server.base_url, proxy=f"http://bob:{SECRET}@127.0.0.1:9"
    ) as client:
        with pytest.raises(ProxyError) as caught:
            await client.chat.completions.create(model="m", messages="hi")
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_sync_client_uses_proxies_dict() -> None:
    """The seed's Client(proxies={...}) sends its requests through the proxy."""
    server = OpenAITestServer()
    proxy = ProxyServer(username="alice", password=SECRET)
    with start_blocking_portal() as portal, server.run_in_thread():
        portal.call(proxy.__aenter__)
        try:
            url = proxy.url_with_auth()
            with Client(base_url=server.base_url, proxies={"https": url}) as client:
                assert SECRET not in repr(client)
                chunks = list(
                    client.chat.completions.create(model="m", messages="sync", stream=True)
                )
        finally:
            portal.call(proxy.__aexit__, None, None, None)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: sync"
    )
    assert [(r.username, r.password) for r in proxy.requests] == [("alice", SECRET)]


@pytest.mark.parametrize("value", ["socks5://h:1", "not a url", "http://"])
def test_bad_proxy_url_is_configuration_error(value: str) -> None:
    """A proxy that is not an http(s) URL is refused when the client is made."""
    with pytest.raises(ConfigurationError):
        AsyncClient(proxy=value)


def test_bad_proxies_key() -> None:
    """proxies= with an unknown key is refused."""
    with pytest.raises(ConfigurationError, match="proxies keys"):
        AsyncClient(proxies={"ftp": "http://h:1"})
