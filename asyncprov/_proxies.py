"""Proxy settings: where a client's requests go, with credentials kept out of sight."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from ._errors import ConfigurationError
from ._secrets import redact

__all__ = ["PROXY_ENV", "ProxyConfig", "resolve_proxy"]

PROXY_ENV = "ASYNCPROV_PROXY"


class ProxyConfig:
    """A proxy URL with its credentials held apart, so they never show in a repr or log."""

    __slots__ = ("_auth", "url")

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"proxy must be an http(s) URL like 'http://user:pw@host:port', not {redact(url)!r}"
            )
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None:
            netloc = f"{netloc}:{port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self._auth: dict[str, str] | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
            self._auth = {"Proxy-Authorization": f"Basic {token}"}

    @property
    def headers(self) -> dict[str, str] | None:
        """The ``Proxy-Authorization`` header for the proxy, if its URL had credentials."""
        return self._auth

    def __repr__(self) -> str:
        shown = self.url
        if self._auth is not None:
            scheme, rest = shown.split("://", 1)
            shown = f"{scheme}://***:***@{rest}"
        return f"ProxyConfig({shown!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ProxyConfig) and other.url == self.url and other._auth == self._auth
        )

    def __hash__(self) -> int:
        return hash(self.url)


def resolve_proxy(
    proxy: str | ProxyConfig | None = None,
    proxies: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> ProxyConfig | None:
    """The proxy to use: ``proxy``, else ``proxies["https"]`` (then ``"http"``), else
    the ``ASYNCPROV_PROXY`` environment variable, else none."""
    if isinstance(proxy, ProxyConfig):
        return proxy
    if proxy:
        return ProxyConfig(proxy)
    if proxies:
        unknown = set(proxies) - {"http", "https", "all"}
        if unknown:
            raise ConfigurationError(
                f"proxies keys must be 'http', 'https' or 'all', not {sorted(unknown)}"
            )
        chosen = proxies.get("https") or proxies.get("all") or proxies.get("http")
        if chosen:
            return ProxyConfig(chosen)
    value = (os.environ if env is None else env).get(PROXY_ENV)
    return ProxyConfig(value) if value else None
