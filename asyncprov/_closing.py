"""The close protocol shared by async objects holding connections."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["AsyncCloseable"]


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
