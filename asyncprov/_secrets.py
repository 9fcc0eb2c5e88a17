"""Keeping secrets out of sight: keys an upstream echoes, credentials in URLs."""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

__all__ = ["KeyMask", "redact"]


class KeyMask:
    """Hides known keys in text an upstream may echo back (its error messages), in
    every form it can reasonably be told apart: any run of 8 or more characters taken
    from a key, or from its base64, percent-encoded or hex form, in any case, so a key
    cut short, re-cased, encoded or partly masked upstream is still hidden. Keys
    shorter than ``MIN_LENGTH`` are placeholders ("none", "test"), not secrets: masking
    them would garble ordinary words.

    Example:
        >>> mask = KeyMask(["sk-live-1234567890abcdef"])
        >>> mask("bad key SK-LIVE-1234567890ab (expired)")
        'bad key *** (expired)'
    """

    MIN_LENGTH = 8

    def __init__(self, keys: Iterable[str | None]) -> None:
        found = {key.strip() for key in keys if key}
        self.keys = sorted((k for k in found if len(k) >= self.MIN_LENGTH), key=len)[::-1]
        size = self.MIN_LENGTH
        forms = [form for key in self.keys for form in _encodings(key)]
        grams = {form[i : i + size].lower() for form in forms for i in range(len(form) - size + 1)}
        # A lookahead finds every (overlapping) place an 8-character piece of a key starts.
        self._pattern = (
            re.compile("(?=(" + "|".join(map(re.escape, sorted(grams))) + "))", re.IGNORECASE)
            if grams
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        covered: list[tuple[int, int]] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(1), match.end(1)
            if covered and start <= covered[-1][1]:
                covered[-1] = (covered[-1][0], max(end, covered[-1][1]))
            else:
                covered.append((start, end))
        for start, end in reversed(covered):
            text = text[:start] + "***" + text[end:]
        return text


def _encodings(key: str) -> list[str]:
    """The forms a key may be echoed in: as it is, base64 (standard and URL-safe),
    percent-encoded and hex."""
    raw = key.encode("utf-8", "surrogateescape")
    return [
        key,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(key, safe=""),
        raw.hex(),
    ]


_SECRET_QUERY = re.compile(
    r"([?&;](?:password|passwd|pass|pwd|secret|token|auth|api[-_]?key|key)=)[^&;#]*",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """A URL with any user:password, and any secret query parameter (``?password=``, as
    redis-py takes one, ``token=``, ``key=``...), replaced by stars. Everything before
    the last ``@`` ahead of the query counts as the user part (a password may hold an
    unencoded ``/``): better a host hidden than a password shown."""
    scheme, sep, rest = url.partition("://")
    if sep:
        head = re.split(r"[?#]", rest, maxsplit=1)[0]
        if "@" in head:
            rest = "***:***@" + rest[head.rindex("@") + 1 :]
        url = f"{scheme}://{rest}"
    return _SECRET_QUERY.sub(r"\1***", url)
