"""Keeping secrets out of sight: keys an upstream echoes, credentials in URLs."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KeyMask", "redact"]


class KeyMask:
    """Hides known key values in text an upstream may echo back (its error messages).

    Keys shorter than ``MIN_LENGTH`` are placeholders ("none", "test"), not secrets:
    masking them would garble ordinary words. Longer keys are masked first, so a key
    that contains another is hidden whole.
    """

    MIN_LENGTH = 8

    def __init__(self, keys: Iterable[str | None]) -> None:
        found = {key.strip() for key in keys if key}
        self.keys = sorted((k for k in found if len(k) >= self.MIN_LENGTH), key=len)[::-1]

    def __call__(self, text: str) -> str:
        for key in self.keys:
            text = text.replace(key, "***")
        return text


def redact(url: str) -> str:
    """A URL with any user:password replaced by stars."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***:***@{rest.split('@', 1)[1]}"
