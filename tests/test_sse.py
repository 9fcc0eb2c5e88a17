"""Tests for the sans-IO server-sent-events decoder in ``asyncprov._sse``."""

from __future__ import annotations

import random
import re

import pytest

from asyncprov._errors import EventTooLargeError
from asyncprov._sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder, _event_name

E = ServerSentEvent
BOM = b"\xef\xbb\xbf"

# A recorded OpenAI-like stream, with LF line ends.
STREAM = (
    'data: {"choices":[{"delta":{"role":"assistant"}}]}\n'
    "\n"
    ": keepalive\n"
    "\n"
    'data: {"choices":[{"delta":{"content":"héllo 世界 🙂"}}]}\n'
    "\n"
    "data: first line\n"
    "data: second line\n"
    "\n"
    "event: error\n"
    'data: {"error":{"message":"overloaded"}}\n'
    "\n"
    "data: [DONE]\n"
    "\n"
).encode()
EVENTS = [
    E(b'{"choices":[{"delta":{"role":"assistant"}}]}'),
    E('{"choices":[{"delta":{"content":"héllo 世界 🙂"}}]}'.encode()),
    E(b"first line\nsecond line"),
    E(b'{"error":{"message":"overloaded"}}', event="error"),
    E(b"[DONE]"),
]
NEWLINES = [b"\n", b"\r", b"\r\n"]


def feed_all(decoder: SSEDecoder, chunks: list[bytes]) -> list[ServerSentEvent]:
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events


def decode(*chunks: bytes, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> list[ServerSentEvent]:
    decoder = SSEDecoder(max_event_size)
    return feed_all(decoder, list(chunks)) + decoder.flush()


def in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_whole_stream() -> None:
    """A recorded stream fed in one chunk gives every event, without needing flush."""
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EVENTS
    assert not decoder.has_partial_line and decoder.flush() == []
    assert decoder.flush() == []


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CR", "CRLF"])
def test_split_at_every_offset(newline: bytes) -> None:
    """Splitting the stream in two at any byte (inside UTF-8 or CRLF too) changes nothing."""
    stream = STREAM.replace(b"\n", newline)
    for i in range(len(stream) + 1):
        decoder = SSEDecoder()
        assert feed_all(decoder, [stream[:i], stream[i:]]) == EVENTS, i
        assert not decoder.has_partial_line and decoder.flush() == []
        assert decoder.flush() == []


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CR", "CRLF"])
def test_byte_by_byte(newline: bytes) -> None:
    """Feeding one byte at a time gives the same events as one chunk."""
    stream = STREAM.replace(b"\n", newline)
    decoder = SSEDecoder()
    assert feed_all(decoder, in_pieces(stream, 1)) == EVENTS
    assert decoder.flush() == []


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CR", "CRLF"])
@pytest.mark.parametrize("size", [3, 64, 1000, 65536])
def test_repeated_stream_in_fixed_reads(newline: bytes, size: int) -> None:
    """A long stream read in fixed-size chunks gives every event in order."""
    stream = STREAM.replace(b"\n", newline) * 50
    assert decode(*in_pieces(stream, size)) == EVENTS * 50


def test_each_event_is_returned_by_the_chunk_that_completes_it() -> None:
    """feed() returns an event as soon as its blank line arrives, CR line ends included."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [E(b"a")]
    assert decoder.feed(b"data: b\r\r") == [E(b"b")]
    assert decoder.feed(b"data: c\n\ndata: d\n\ndata: e") == [E(b"c"), E(b"d")]
    assert decoder.feed(b"\n\n") == [E(b"e")]
    assert decoder.feed(b"data: f\nd") == []
    assert decoder.feed(b"ata: g\n\n") == [E(b"f\ng")]


def test_crlf_split_across_feeds() -> None:
    """A CR ending one chunk and an LF starting the next are a single line end."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\ndata: c\r") == []
    assert decoder.feed(b"\n\r") == [E(b"a\nb\nc")]
    assert decoder.feed(b"\n") == []
    assert not decoder.has_partial_line and decoder.flush() == []


def test_cr_followed_by_other_byte_across_feeds() -> None:
    """A CR ending a chunk is a line end even when the next chunk does not start with LF."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [E(b"a")]
    assert decoder.feed(b"data: b\n\n") == [E(b"b")]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 100])
def test_bom_at_start_is_skipped(size: int) -> None:
    """A UTF-8 BOM opening the stream is ignored, however the reads split it."""
    assert decode(*in_pieces(BOM + STREAM, size)) == EVENTS


def test_bom_only_at_start() -> None:
    """A BOM after the start is part of the line, so here it makes an unknown field."""
    assert decode(b"data: a\n\n" + BOM + b"data: b\n\n") == [E(b"a")]
    assert decode(BOM + BOM + b"data: b\n\n") == []


def test_bom_prefix_that_is_not_a_bom() -> None:
    """Bytes that start like a BOM but are not one are kept as stream content."""
    assert decode(b"\xef", b"\xbb\n", b"data: x\n\n") == [E(b"x")]
    assert decode(b"\xef\xbbdata: x\n\ndata: y\n\n") == [E(b"y")]


def test_field_without_colon_has_empty_value() -> None:
    """A line without a colon is a field named by the whole line, with an empty value."""
    assert decode(b"data\n\n") == [E(b"")]
    assert decode(b"data\ndata\n\n") == [E(b"\n")]
    assert decode(b"event\ndata: x\n\n") == [E(b"x")]


def test_only_one_leading_space_is_stripped() -> None:
    """``data:x`` needs no space; of several spaces only the first is removed."""
    assert decode(b"data:x\n\n") == [E(b"x")]
    assert decode(b"data:  x \n\n") == [E(b" x ")]
    assert decode(b"data: \n\n") == [E(b"")]


def test_value_may_contain_colons() -> None:
    """Only the first colon separates the field name from the value."""
    assert decode(b'data: {"a": "b:c"}\n\nevent: x:y\ndata: 1\n\n') == [
        E(b'{"a": "b:c"}'),
        E(b"1", event="x:y"),
    ]


def test_comments_are_ignored() -> None:
    """Lines starting with a colon are comments and affect nothing."""
    assert decode(b": ping\n\n:\n\ndata: a\n: inside\ndata: b\n\n") == [E(b"a\nb")]


def test_id_handling() -> None:
    """The last id of an event is kept, NUL ids are ignored, and ids do not carry over."""
    stream = (
        b"id: 1\ndata: a\n\n"
        b"id: 2\nid: 3\ndata: b\n\n"
        b"id: 4\nid: bad\x00id\ndata: c\n\n"
        b"data: d\n\n"
        b"id\ndata: e\n\n"
        b"id: \xff\ndata: f\n\n"
    )
    expected = [
        E(b"a", id="1"),
        E(b"b", id="3"),
        E(b"c", id="4"),
        E(b"d"),
        E(b"e", id=""),
        E(b"f", id="\ufffd"),
    ]
    assert decode(stream) == expected
    assert decode(*in_pieces(stream, 1)) == expected


def test_id_alone_dispatches_nothing() -> None:
    """An event with only an id has no data or name, so nothing is dispatched."""
    assert decode(b"id: 1\n\ndata: a\n\n") == [E(b"a")]


def test_retry_is_ignored() -> None:
    """The retry field neither changes an event nor dispatches one."""
    assert decode(b"retry: 1000\n\nretry: 5\ndata: a\n\n") == [E(b"a")]


def test_unknown_fields_are_ignored() -> None:
    """Unknown field names, including wrongly cased ones, are ignored."""
    assert decode(b"foo: bar\ndata: a\n\nData: b\nEVENT: c\n\n") == [E(b"a")]


@pytest.mark.parametrize("newline", NEWLINES, ids=["LF", "CR", "CRLF"])
def test_blank_lines_alone_dispatch_nothing(newline: bytes) -> None:
    """Blank lines with nothing pending dispatch no event."""
    decoder = SSEDecoder()
    assert decoder.feed(newline * 5) == []
    assert not decoder.has_partial_line and decoder.flush() == []
    assert decoder.flush() == []
    assert decode(b"data: a\n\n\n\n\ndata: b\n\n\n") == [E(b"a"), E(b"b")]


def test_event_without_data_is_dispatched() -> None:
    """Unlike the spec, an event name alone dispatches an event with empty data."""
    assert decode(b"event: ping\n\n") == [E(b"", event="ping")]
    assert decode(b"event: a\nevent: b\n\n") == [E(b"", event="b")]


def test_empty_event_name_means_message() -> None:
    """An empty event name is "message" and does not by itself dispatch."""
    assert decode(b"event:\n\n") == []
    assert decode(b"event: x\nevent:\ndata: a\n\n") == [E(b"a")]


def test_event_name_is_decoded_with_replacement() -> None:
    """The event name is UTF-8 with invalid bytes replaced; data stays raw bytes."""
    assert decode("event: ünï\ndata: \xff\n\n".encode("latin-1").replace(b"\xfc", b"\xff")) == [
        E(b"\xff", event="\ufffdn\ufffd")
    ]
    assert decode("event: 世界\ndata: x\n\n".encode()) == [E(b"x", event="世界")]


def test_many_distinct_event_names_keep_memory_bounded() -> None:
    """Runs of named events decode each name right however many distinct names a server
    sends; only a few dozen decoded names are kept for reuse."""
    names = [f"name-{i}" for i in range(500)]
    body = b"".join(f"event: {name}\ndata: {i}\n\n".encode() for i, name in enumerate(names))
    events = SSEDecoder().feed(body)
    assert [(e.event, e.data) for e in events] == [
        (n, str(i).encode()) for i, n in enumerate(names)
    ]
    assert len(_event_name.__self__) <= 64


def test_flush_dispatches_event_missing_final_blank_line() -> None:
    """flush() dispatches an event whose lines ended but whose blank line never came."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nevent: e\ndata: b\ndata: c\n") == [E(b"a")]
    assert not decoder.has_partial_line  # every line ended: not a cut body
    assert decoder.flush() == [E(b"b\nc", event="e")]
    assert decoder.flush() == []


def test_flush_discards_unterminated_line() -> None:
    """flush() drops the bytes of an unterminated last line; has_partial_line flagged them."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: cut") == [E(b"a")]
    assert decoder.has_partial_line
    assert decoder.flush() == []
    assert not decoder.has_partial_line

    decoder.feed(b"event: e\ndata: b\ndata: cu")
    assert decoder.flush() == [E(b"b", event="e")]


def test_has_partial_line() -> None:
    """has_partial_line is True exactly while the bytes fed end inside a line (a body
    ending there was cut), whatever events or fields are pending."""
    decoder = SSEDecoder()
    assert not decoder.has_partial_line
    decoder.feed(b": comment\n")
    assert not decoder.has_partial_line
    decoder.feed(b"id: 1\n")
    assert not decoder.has_partial_line
    decoder.feed(b"\n")
    decoder.feed(b"d")
    assert decoder.has_partial_line
    decoder.feed(b"ata: x\n")
    assert not decoder.has_partial_line
    assert decoder.feed(b"\n") == [E(b"x")]
    decoder.feed(b'data: {"cut')
    assert decoder.has_partial_line


@pytest.mark.parametrize("size", [1, 7, 64, 10_000])
def test_endless_line_is_too_large(size: int) -> None:
    """One line that never ends raises once it passes the limit, whatever the chunking."""
    decoder = SSEDecoder(max_event_size=100)
    chunks = in_pieces(b"data: " + b"x" * 94, size)
    assert feed_all(decoder, chunks) == []
    with pytest.raises(EventTooLargeError, match="max_event_size") as info:
        for _ in range(1000):
            decoder.feed(b"x" * size)
    assert info.value.limit == 100


def test_single_chunk_over_limit_raises() -> None:
    """A single chunk holding a too-long line raises too."""
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=100).feed(b"x" * 101)
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=100).feed(b"data: " + b"x" * 95 + b"\n\n")
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=100).feed(b"data: " + b"x" * 95 + b"\n\ndata: y\n\n")
    with pytest.raises(EventTooLargeError):
        SSEDecoder(max_event_size=100).feed(b"data: a\n\n" + b"x" * 101)
    with pytest.raises(EventTooLargeError):  # 51 bytes of data, then a 50-byte fragment
        SSEDecoder(max_event_size=100).feed(b"data: " + b"x" * 50 + b"\ndata: " + b"x" * 44)


@pytest.mark.parametrize("size", [1, 7, 16, 1000])
def test_many_data_lines_are_too_large(size: int) -> None:
    """Data lines adding up past the limit raise at the same line for any chunking."""
    line = b"data: 123456789\n"  # each adds 10 bytes (value + LF) to the event
    decoder = SSEDecoder(max_event_size=100)
    assert feed_all(decoder, in_pieces(line * 9, size)) == []  # 80 + 15 is fine
    with pytest.raises(EventTooLargeError):
        feed_all(decoder, in_pieces(line, size))  # 90 + 15 is not
    decoder = SSEDecoder(max_event_size=100)
    with pytest.raises(EventTooLargeError):
        feed_all(decoder, in_pieces(line * 20 + b"\n", size))


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_exactly_at_limit_is_allowed(size: int) -> None:
    """An event of exactly max_event_size bytes passes; one byte more raises."""
    one_line = b"data: " + b"x" * 94 + b"\n\n"  # 100-byte line
    assert decode(*in_pieces(one_line, size), max_event_size=100) == [E(b"x" * 94)]
    two_lines = b"data: 12345678\n" + b"data: " + b"y" * 85 + b"\n\n"  # 9 + 91
    assert decode(*in_pieces(two_lines, size), max_event_size=100) == [E(b"12345678\n" + b"y" * 85)]
    for over in (b"data: " + b"x" * 95 + b"\n\n", two_lines.replace(b"y\n", b"yy\n")):
        with pytest.raises(EventTooLargeError):
            decode(*in_pieces(over, size), max_event_size=100)


def test_limit_counts_per_event() -> None:
    """The size resets after each event, so many events may add up past the limit."""
    event = b"data: " + b"x" * 90 + b"\n\n"
    assert decode(event * 50, max_event_size=100) == [E(b"x" * 90)] * 50


def test_decoder_resets_after_too_large() -> None:
    """After raising, the decoder starts afresh and can decode a new stream."""
    decoder = SSEDecoder(max_event_size=10)
    with pytest.raises(EventTooLargeError):
        decoder.feed(b"data: 0123456789\n\n")
    assert not decoder.has_partial_line and decoder.flush() == []
    assert decoder.feed(b"data: ok\n\n") == [E(b"ok")]


def test_invalid_limit() -> None:
    """A limit below one byte is a ValueError."""
    with pytest.raises(ValueError, match="max_event_size"):
        SSEDecoder(max_event_size=0)


def test_decoder_reuse() -> None:
    """One decoder keeps decoding after events, and after flush() takes a new stream."""
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EVENTS
    assert decoder.feed(STREAM[:40]) + decoder.feed(STREAM[40:]) == EVENTS
    decoder.feed(b"data: cut")
    assert decoder.flush() == []
    assert decoder.feed(BOM + b"data: again\n\n") == [E(b"again")]


def reference(stream: bytes) -> list[ServerSentEvent]:
    """Straightforward line-by-line decoding of a whole body, then flush."""
    stream = stream.removeprefix(BOM)
    lines = re.split(rb"\r\n|\r|\n", stream)[:-1]  # the last piece is unterminated
    events: list[ServerSentEvent] = []
    data: list[bytes] = []
    name = ident = None
    for line in [*lines, b""]:
        if not line:
            if data or name:
                events.append(E(b"\n".join(data), name or "message", ident))
            data, name, ident = [], None, None
            continue
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"id" and b"\0" not in value:
            ident = value.decode("utf-8", "replace")
    return events


LINES = [
    b'data: {"choices":[{"delta":{"content":"hi"}}]}',
    "data: héllo 世界 🙂".encode(),
    b"data:",
    b"data",
    b"data:x:y",
    b"event: content_block_delta",
    b"event:",
    b"id: 7",
    b"retry: 10",
    b": keepalive",
    b"other: 1",
    b"",
    b"",
    b"",
]


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_match_reference(seed: int) -> None:
    """Random streams, line ends and chunkings decode like the line-by-line reference."""
    rng = random.Random(seed)
    parts = []
    for _ in range(rng.randrange(1, 200)):
        parts.append(rng.choice(LINES))
        parts.append(rng.choice(NEWLINES) if seed % 4 == 0 else NEWLINES[seed % 3])
    stream = b"".join(parts) + rng.choice([b"", b"data: cut"])
    cuts = sorted(rng.sample(range(len(stream) + 1), rng.randrange(0, 12)))
    chunks = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert decode(*chunks) == reference(stream)


EVENT_FRAMES = [
    b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n',
    'data: {"choices":[{"delta":{"content":"世界 🙂"}}]}\n\n'.encode(),
    b'event: content_block_delta\ndata: {"delta":{"text":"hi"}}\n\n',
    b"event: ping\n\n",
    b"data: a\ndata: b\n\n",
    b": keepalive\n\n",
    b"id: 1\ndata: x\n\n",
    b"\n",
]


@pytest.mark.parametrize("seed", range(40))
def test_random_event_streams_match_reference(seed: int) -> None:
    """Streams of typical whole events, in random reads, decode like the reference."""
    rng = random.Random(seed)
    weights = [20, 5, 10, 1, 1, 1, 1, 1]
    stream = b"".join(rng.choices(EVENT_FRAMES, weights, k=rng.randrange(1, 300)))
    stream = stream.replace(b"\n", NEWLINES[seed % 3])
    size = rng.choice([1, 5, 50, 500, 5000])
    chunks: list[bytes] = []
    start = 0
    while start < len(stream):
        end = start + rng.randrange(1, 2 * size + 1)
        chunks.append(stream[start:end])
        start = end
    assert decode(*chunks) == reference(stream)


NAMED_FRAMES = [
    b'event: content_block_delta\ndata: {"delta":{"text":"hi"}}\n\n',
    b"event: ping\ndata: \n\n",
    b"event: \ndata: unnamed\n\n",
    b"event: e\ndata:no-space\n\n",
    b"event:tight\ndata: x\n\n",
    b"event: e\ndata: a\ndata: b\n\n",
    b"event: e\nid: 3\ndata: c\n\n",
    b"event: e\n\n",
    b"event: e\ndata:  two spaces\n\n",
    b"data: plain\n\n",
    "event: ünï\ndata: 世界\n\n".encode(),
    # near-misses named like the run around them (a run of one name is split whole)
    b"event: content_block_delta\ndata: a\ndata: b\n\n",
    b"event: content_block_delta\n\n",
    b"event: content_block_delta\ndata:tight\n\n",
    b"event: content_block_delta\nid: 1\ndata: z\n\n",
    b"event: content_block_delta\ndata: \n\n",
]


@pytest.mark.parametrize("seed", range(80))
def test_random_named_event_runs_match_reference(seed: int) -> None:
    """Runs of `event:` + `data:` blocks (Anthropic's streams, parsed a run at a time)
    mixed with near-misses of that shape decode like the reference in any reads."""
    rng = random.Random(seed)
    weights = (
        [60, 3, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1] if seed % 2 else [1] * len(NAMED_FRAMES)
    )
    stream = b"".join(rng.choices(NAMED_FRAMES, weights, k=rng.randrange(1, 300)))
    size = rng.choice([1, 7, 60, 600, 6000, len(stream)])
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    assert decode(*chunks) == reference(stream)
