"""The close protocols shared by objects holding connections, async and sync."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncCloseable", "Closeable"]


class AsyncCloseable:
    """``async with``, ``aclose()`` and openai-python's ``close()`` over one ``aclose``."""

    async def aclose(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    async def close(self) -> None:
        """The same as ``aclose()`` (openai-python's name)."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Closeable:
    """``with`` over one ``close()``, for the sync objects."""

    def close(self) -> None:
        """Release what this object holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
