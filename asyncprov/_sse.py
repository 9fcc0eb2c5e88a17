"""Sans-IO decoder for ``text/event-stream`` response bodies (server-sent events).

Feed it the raw bytes of a body as they arrive; it returns the events each read
completes. Parsing follows the WHATWG EventSource rules with two deviations suited to
LLM streams: an event that has an ``event:`` name but no ``data:`` line is dispatched
too, and ``id`` belongs to the one event that carried it (it is not carried over to
later events). Data stays raw ``bytes``, so a UTF-8 character split between reads
needs no care.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from itertools import repeat
from typing import NoReturn

from asyncprov._errors import EventTooLargeError

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_EVENT_SIZE: int = 8 * 1024 * 1024
"""Default limit, in bytes, on the size of one event; see `SSEDecoder`."""

_BOM = b"\xef\xbb\xbf"
_NAME_DATA = operator.methodcaller("partition", b"\ndata: ")
_join = b"".join


@dataclass(slots=True)
class ServerSentEvent:
    """One dispatched server-sent event; treat it as read-only.

    Not ``frozen``: a frozen dataclass takes about four times as long to build,
    which shows on a stream's hot path.

    Attributes:
        data: The event's ``data`` lines joined with ``b"\\n"``, undecoded.
        event: The ``event`` field decoded as UTF-8 (invalid bytes replaced);
            ``"message"`` when absent or empty.
        id: The last ``id`` field of this event (ignored if it contains NUL), or None.
    """

    data: bytes
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Incremental parser turning body chunks into `ServerSentEvent` objects.

    Line ends may be LF, CR or CRLF, and chunks may split the stream at any byte,
    including between the CR and LF of one line end. A UTF-8 BOM at the start is
    skipped. ``retry`` and unknown fields are ignored.

    The size of the event being received is the spec's data buffer (each ``data``
    value plus one LF) plus the length of the line being read, line ends excluded.
    When it would exceed ``max_event_size``, `feed` raises `EventTooLargeError`
    (also for one endless line that never ends), whatever the chunking. The decoder
    is reset when it raises; events completed earlier in the failing chunk are lost.

    Args:
        max_event_size: Limit in bytes on one event, as described above.

    Raises:
        ValueError: If ``max_event_size`` is not positive.
    """

    __slots__ = ("_data", "_event", "_id", "_limit", "_partial", "_size", "_skip_lf", "_start")

    _limit: int
    _start: bool  # BOM not yet ruled in or out; _partial holds a prefix of one
    _skip_lf: bool  # the last chunk ended in CR, so a leading LF completes a CRLF
    # Bytearrays, not lists of pieces: many tiny reads or lines must not cost more
    # memory than the bytes they hold.
    _partial: bytearray  # the unterminated last line
    _data: bytearray  # data values joined with LF
    _size: int  # the spec's data buffer length: len(value) + 1 per data line
    _event: str | None
    _id: str | None

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, got {max_event_size}")
        self._limit = max_event_size
        self._reset()

    @property
    def has_partial_line(self) -> bool:
        """Whether the bytes fed so far end in the middle of a line: a body ending here
        was cut short (what `flush` would dispatch is only what complete lines gave)."""
        return bool(self._partial) and not self._start

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse the next chunk of the body.

        Args:
            chunk: Bytes as read from the body, of any length.

        Returns:
            The events this chunk completed, in order; often empty.

        Raises:
            EventTooLargeError: If the current event grows past ``max_event_size``.
        """
        if self._start:
            chunk = bytes(self._partial) + chunk
            self._partial.clear()
            if len(chunk) < 3 and _BOM.startswith(chunk):
                self._partial += chunk
                return []
            self._start = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if chunk.find(b"\r") >= 0:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        limit = self._limit
        fresh = not (self._partial or self._size) and self._event is None and self._id is None
        # Fast path for paced streams: the chunk is exactly one "data: ..." event.
        if (
            fresh
            and chunk[:6] == b"data: "
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk[-1] == 0x0A
            and len(chunk) - 2 <= limit
        ):
            return [ServerSentEvent(chunk[6:-2])]
        if chunk.find(b"\n") < 0:
            self._partial += chunk
            if len(self._partial) + self._size > limit:
                self._too_large()
            return []
        if self._partial:
            self._partial += chunk
            chunk = bytes(self._partial)
            self._partial.clear()
            fresh = not self._size and self._event is None and self._id is None
        if not fresh and self._event is not None and not self._size and self._id is None:
            # The last read ended after an event's "event:" line (the usual cut in
            # Anthropic's streams): put the line back so the run below starts whole.
            chunk = b"event: " + self._event.encode() + b"\n" + chunk
            self._event = None
            fresh = True

        events: list[ServerSentEvent] = []
        if fresh and len(chunk) <= limit:
            # Bulk fast path: a run of events that are each one "data: ..." line.
            parts = chunk.split(b"\n\ndata: ")
            rest = parts.pop()
            if (
                parts
                and parts[0][:6] == b"data: "
                # no LF but in the separators, so every part is one line (joining and
                # one memchr cost a seventh of counting the chunk's LFs)
                and _join(parts).find(b"\n") < 0
            ):
                parts[0] = parts[0][6:]
                events = list(map(ServerSentEvent, parts))
                chunk = b"data: " + rest
            elif chunk[:7] == b"event: ":
                events, chunk = _named_run(chunk)
        # Every block but the last is followed by a blank line, so ends an event.
        blocks = chunk.split(b"\n\n")
        tail = blocks.pop()
        for block in blocks:
            if fresh and len(block) <= limit:
                # Fast paths for a block of one "data: " line, or "event: " then "data: ".
                nl = block.find(b"\n")
                if nl < 0 and block[:6] == b"data: ":
                    events.append(ServerSentEvent(block[6:]))
                    continue
                if (
                    block[:7] == b"event: "
                    and block[nl + 1 : nl + 7] == b"data: "
                    and block.find(b"\n", nl + 1) < 0
                ):
                    event = block[7:nl].decode("utf-8", "replace") or "message"
                    events.append(ServerSentEvent(block[nl + 7 :], event))
                    continue
            self._lines(block.split(b"\n"), events)
            self._dispatch(events)
            fresh = True  # dispatching reset the event state
        end = tail.rfind(b"\n")
        if end >= 0:
            self._lines(tail[:end].split(b"\n"), events)
            tail = tail[end + 1 :]
        if len(tail) + self._size > limit:
            self._too_large()
        self._partial += tail
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End the body: dispatch a pending event and reset the decoder for reuse.

        An event whose lines were all terminated but which lacked the final blank
        line is dispatched. The bytes of an unterminated last line are discarded,
        since a body cut mid-line is truncated; check `has_partial_line` before calling
        this to detect that.

        Returns:
            The pending event, if any.
        """
        events: list[ServerSentEvent] = []
        self._dispatch(events)
        self._reset()
        return events

    def _lines(self, lines: list[bytes], events: list[ServerSentEvent]) -> None:
        for line in lines:
            if not line:
                self._dispatch(events)
                continue
            if len(line) + self._size > self._limit:
                self._too_large()
            name, _, value = line.partition(b":")
            if not name:
                continue  # comment
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                if self._size:
                    self._data += b"\n"
                self._data += value
                self._size += len(value) + 1
            elif name == b"event":
                self._event = value.decode("utf-8", "replace") or None
            elif name == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        if self._size or self._event is not None:
            events.append(ServerSentEvent(bytes(self._data), self._event or "message", self._id))
        if self._size:
            self._data.clear()
            self._size = 0
        self._event = self._id = None

    def _reset(self) -> None:
        self._start = True
        self._skip_lf = False
        self._partial = bytearray()
        self._data = bytearray()
        self._size = 0
        self._event = None
        self._id = None

    def _too_large(self) -> NoReturn:
        limit = self._limit
        self._reset()
        raise EventTooLargeError(
            f"server-sent event larger than max_event_size ({limit} bytes)", limit=limit
        )


class _EventNames(dict[bytes, str]):
    """Event names decoded once (a stream repeats a handful; at most 64 are kept)."""

    def __missing__(self, name: bytes) -> str:
        text = name.decode("utf-8", "replace") or "message"
        if len(self) < 64:
            self[name] = text
        return text


_event_name = _EventNames().__getitem__


def _named_run(chunk: bytes) -> tuple[list[ServerSentEvent], bytes]:
    """The events of a run of blocks that are each ``event: NAME`` then one ``data: ``
    line (Anthropic's streams) but for the last, and the bytes left from that last one;
    ``([], chunk)`` when the run is not only such blocks (the general path parses it)."""
    line = chunk.find(b"\n")  # the end of the first block's "event: NAME" line
    name = chunk[7:line]
    separator = b"\n\nevent: " + name + b"\ndata: "
    if chunk.startswith(b"data: ", line + 1) and chunk.count(separator) == chunk.count(
        b"\n\nevent: "
    ):
        # Every block named alike (most reads of a long stream): split on the whole
        # separator, as a run of data-only events is, and each part is one event's data.
        parts = chunk[line + 7 :].split(separator)
        rest = parts.pop()
        if parts and _join(parts).find(b"\n") < 0:  # as in `feed`: each part one line
            events = list(map(ServerSentEvent, parts, repeat(_event_name(name))))
            return events, b"event: " + name + b"\ndata: " + rest
        return [], chunk
    parts = chunk.split(b"\n\nevent: ")
    rest = parts.pop()
    # Each part holds at least one LF (before "data: "); with this count, exactly one.
    if not parts or chunk.count(b"\n") != 3 * len(parts) + rest.count(b"\n"):
        return [], chunk
    parts[0] = parts[0][7:]
    names, separators, datas = zip(*map(_NAME_DATA, parts), strict=True)
    if b"" in separators:
        return [], chunk
    return list(map(ServerSentEvent, datas, map(_event_name, names))), b"event: " + rest
