"""``SharedState``: where the limits and provider health of many processes are shared.

Only the settings live here (no Redis import): the store that uses them is
``_shared_store``, loaded when a client is given one.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._secrets import redact

__all__ = ["SharedState", "SharedStateInput", "as_shared_state"]


class SharedState(BaseModel):
    """Rate limits and provider health shared by every client on one Redis.

    Every client (in any process, on any machine) given the same Redis and
    ``namespace`` shares, per provider, its ``rate_limits`` (rpm, tpm, concurrency),
    the 429 pauses, and the health failover reads (cool-downs, consecutive failures).
    Needs the ``redis`` package: ``pip install 'asyncprov[redis]'``.

    Attributes:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://`` for TLS, or
            ``unix://``). A password in it is used and never shown.
        namespace: prefix of every key; clients share only within one namespace.
        on_error: what a call does when Redis does not answer within ``timeout``:
            ``"open"`` (default) goes on with this process's own in-memory limits and
            health, logs the switch once, and shares again once Redis answers;
            ``"closed"`` raises ``SharedStateError`` and sends nothing.
        timeout: the longest one Redis round trip may take, in seconds (default 0.25).
        retry_interval: after a failure, seconds before Redis is tried again (calls in
            between take the ``on_error`` path at once, so a dead Redis costs nothing).
        lease: seconds a concurrency slot stays held without being renewed: a process
            renews its slots every third of it, so a killed process's slots come back
            at most this long after its death (default 10).
        health_refresh: seconds a process trusts its copy of the shared health before
            a failover call reads it again (default 0.5; a new process reads it first).

    Example:
        >>> AsyncClient(OpenaiChat, rate_limits={"OpenaiChat": RateLimit(rpm=500)},
        ...             shared_state=SharedState("redis://127.0.0.1:6379/0", namespace="prod"))
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", defer_build=True, hide_input_in_errors=True
    )

    url: str = Field(repr=False)
    namespace: str = Field(default="asyncprov", min_length=1)
    on_error: Literal["open", "closed"] = "open"
    timeout: float = Field(default=0.25, gt=0, allow_inf_nan=False)
    retry_interval: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    lease: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    health_refresh: float = Field(default=0.5, ge=0, allow_inf_nan=False)

    def __init__(self, url: str, **settings: object) -> None:
        from pydantic import ValidationError

        from ._errors import ConfigurationError

        try:
            super().__init__(url=url, **settings)
        except ValidationError as exc:  # never echoes the URL (it may hold a password)
            raise ConfigurationError.from_validation(exc, what="SharedState") from None

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{redact(value)!r} is not a redis://, rediss:// or unix:// URL")
        try:
            parts.port  # noqa: B018 (parsed here, so a bad one is said now, not per call)
        except ValueError:
            raise ValueError(
                f"{redact(value)!r} has no valid port (percent-encode a '/' or '@' in a password)"
            ) from None
        return value

    @property
    def where(self) -> str:
        """The URL with any password replaced by stars: what messages and logs show."""
        return redact(self.url)

    def __repr__(self) -> str:
        return (
            f"SharedState({self.where!r}, namespace={self.namespace!r}, on_error={self.on_error!r})"
        )

    __str__ = __repr__


SharedStateInput = SharedState | str
"""What ``shared_state=`` takes: a ``SharedState``, or a Redis URL (default settings)."""


def as_shared_state(value: SharedStateInput) -> SharedState:
    """``value`` as a ``SharedState`` (a plain URL gets the defaults)."""
    from ._errors import ConfigurationError

    if isinstance(value, SharedState):
        return value
    if not isinstance(value, str):
        raise ConfigurationError("shared_state must be a SharedState or a redis:// URL")
    return SharedState(value)
