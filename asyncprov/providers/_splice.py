"""The fast way for the many text events of a stream in a wire format of its own.

A provider parses an event the long way (the whole JSON, then a chunk built from it)
and learns the bytes around its text string. A later event made of the same bytes
around another string is a text event of the same stream: its chunk is that string
spliced into the chunk's JSON and validated once, which is what the OpenAI wire pays per
chunk. Only strings with no quote, backslash or control character take this way (such a
string ends where the learned one did, and means what it says); every splice is
validated, and any other event takes the long way, which reports malformed JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pydantic_core

from .._types import ChatCompletionChunk
from .base import validate_chunk_json

__all__ = ["TAKE_AFTER", "TEXT_TAIL", "TextEvents", "one_string", "text_chunk", "text_head"]

TEXT_TAIL = b'"},"finish_reason":null}]}'
"""A content chunk's JSON after its content string (see `text_head`)."""
TAKE_AFTER = 16
"""Events in a row laid out alike, parsed the long way, before a layout is taken."""
_PLAIN = re.compile(rb'([^"\\\x00-\x1f]*)')
"""The inside of a JSON string with no escape: it ends at the next quote."""


def text_head(id: str, created: int, model: str) -> bytes:
    """The JSON of a content chunk of this stream up to its content string's opening
    quote (see `text_chunk`)."""
    head = pydantic_core.to_json({"id": id, "created": created, "model": model})
    return head[:-1] + b',"choices":[{"index":0,"delta":{"content":"'


def text_chunk(head: bytes, text: bytes, provider: str) -> ChatCompletionChunk | None:
    """The content chunk whose content is ``text``, the inside of a JSON string cut from
    the provider's event, spliced after `text_head` and validated once; ``None`` when
    the result is not a valid chunk."""
    try:
        chunk = validate_chunk_json(head + text + TEXT_TAIL)
    except ValueError:
        return None
    chunk.__dict__["provider"] = provider  # pydantic's __setattr__ costs more
    return chunk


def _escaped(data: bytes, quote: int) -> bool:
    """Whether the quote at ``quote`` is escaped (an odd run of backslashes before it)."""
    run = 0
    while data[quote - 1 - run] == 0x5C:
        run += 1
    return run % 2 == 1


def one_string(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end + 1]`` is one JSON string (every quote inside escaped)."""
    quote = data.find(b'"', start + 1)
    while quote < end:
        if not _escaped(data, quote):
            return False
        quote = data.find(b'"', quote + 1)
    return not _escaped(data, end)


def _never(data: bytes) -> None:
    return None


class TextEvents:
    """The layout of one stream's text events, learned from those parsed the long way.

    A layout is taken once `TAKE_AFTER` events parsed the long way in a row were laid
    out alike: compiling one costs about 0.1 ms, what some 150 events taking the fast way
    save, and a layout seen that often in a row is a long stream's (short streams, and
    streams whose every event differs, never pay for it). An event parsed the long way
    with another layout (or none) sets it aside, so an event taking the fast way is laid
    out like the last one parsed the long way, whatever else it carries (a usage, say).
    The stream loop splices inline, for every event (a call here would cost a sixth of
    the OpenAI wire's whole per-chunk cost)::

        text = fast.match(data)  # one call into the regular expression engine
        if text is not None:
            chunk = validate_chunk_json(fast.head + text[1] + TEXT_TAIL)  # or ValueError
    """

    __slots__ = ("_layout", "_match", "_seen", "head", "match")

    def __init__(self) -> None:
        self._layout: tuple[bytes, bytes, bytes] | None = None
        """The prefix and suffix of the last text event learned, and its chunks' head."""
        self._match: Callable[[bytes], re.Match[bytes] | None] | None = None
        self._seen = 0
        """Events in a row parsed the long way with ``_layout``."""
        self.match: Callable[[bytes], re.Match[bytes] | None] = _never
        """Whether an event has the layout taken; its group 1 is its string's inside."""
        self.head = b""
        """The JSON of the chunks of the layout taken, up to their content (`text_head`)."""

    def forget(self) -> None:
        """Send every event the long way, until `learn` takes a layout again."""
        self.match, self._seen = _never, 0

    def learn(self, data: bytes, start: int, end: int, head: bytes) -> None:
        """Learn from the event ``data`` parsed the long way: ``data[start - 1]`` and
        ``data[end]`` are the quotes around its text string (the caller checked), and its
        chunks' JSON starts with ``head`` (`text_head`)."""
        layout = (data[:start], data[end:], head)
        if layout != self._layout:
            self._layout, self._match, self._seen, self.match = layout, None, 1, _never
            return
        self._seen += 1
        if self._match is None and self._seen < TAKE_AFTER:
            return
        if self._match is None:
            prefix, suffix = re.escape(layout[0]), re.escape(layout[1])
            self._match = re.compile(prefix + _PLAIN.pattern + suffix, re.DOTALL).fullmatch
        self.match, self.head = self._match, head
