"""Tests for image input normalisation (asyncprov._images)."""

from __future__ import annotations

import base64
import binascii
import io
import pathlib
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from asyncprov._errors import ImageError, InvalidRequestError
from asyncprov._images import (
    DEFAULT_MAX_IMAGE_BYTES,
    is_image_url,
    load_image_url,
    load_image_urls,
    sniff_image_type,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(16))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(8)
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
GIF87 = b"GIF87a\x01\x00\x01\x00\x00\x00\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 " + bytes(8)


Opener = Callable[..., Any]


@pytest.fixture
def open_file() -> Iterator[Opener]:
    """Open files outside the event loop's code path; close them all after the test."""
    files: list[IO[Any]] = []

    def _open(path: pathlib.Path, mode: str = "rb") -> IO[Any]:
        file = open(path, mode)  # noqa: SIM115 - closed at teardown
        files.append(file)
        return file

    yield _open
    for file in files:
        file.close()


def data_url(mime: str, data: bytes) -> str:
    """Build the data: URL the loader is expected to return."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (GIF87, "image/gif"),
        (WEBP, "image/webp"),
        (b"hello world, not an image", None),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
        (b"", None),
    ],
)
def test_sniff_image_type(data: bytes, mime: str | None) -> None:
    """Magic bytes identify JPEG, PNG, GIF and WEBP; anything else is None."""
    assert sniff_image_type(data) == mime


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://example.com/a.png", True),
        ("https://example.com/a.png", True),
        ("HTTPS://EXAMPLE.COM/A.PNG", True),
        ("ftp://example.com/a.png", False),
        ("data:image/png;base64,AAAA", False),
        ("/tmp/a.png", False),
        ("httpx.png", False),
    ],
)
def test_is_image_url(value: str, expected: bool) -> None:
    """Only http:// and https:// (any case) count as image URLs."""
    assert is_image_url(value) is expected


def test_default_limit_is_20_mib() -> None:
    """The default size limit is 20 MiB."""
    assert DEFAULT_MAX_IMAGE_BYTES == 20 * 1024 * 1024


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
async def test_bytes_each_type(data: bytes, mime: str) -> None:
    """Raw bytes of every supported type become a data: URL with the sniffed MIME type."""
    assert await load_image_url(data) == data_url(mime, data)


async def test_bytearray_and_memoryview() -> None:
    """bytearray and memoryview are accepted like bytes."""
    expected = data_url("image/png", PNG)
    assert await load_image_url(bytearray(PNG)) == expected
    assert await load_image_url(memoryview(PNG)) == expected


async def test_empty_bytes() -> None:
    """Empty bytes are refused as an empty image."""
    with pytest.raises(ImageError, match="image is empty"):
        await load_image_url(b"")


async def test_bytes_over_limit() -> None:
    """Bytes over max_bytes are refused with the size and the limit in the message."""
    with pytest.raises(ImageError, match=rf"{len(PNG)} bytes.*limit of 10 bytes"):
        await load_image_url(PNG, max_bytes=10)


async def test_bytes_at_limit_accepted() -> None:
    """Bytes exactly max_bytes long are accepted."""
    assert await load_image_url(PNG, max_bytes=len(PNG)) == data_url("image/png", PNG)


async def test_unknown_bytes() -> None:
    """Unrecognised bytes are refused, naming the accepted types, without echoing the data."""
    with pytest.raises(ImageError, match="only JPEG, PNG, GIF and WEBP are accepted") as info:
        await load_image_url(b"secret-not-an-image")
    assert "secret" not in str(info.value)


async def test_errors_are_value_errors() -> None:
    """ImageError is an InvalidRequestError and a ValueError."""
    with pytest.raises(InvalidRequestError):
        await load_image_url(b"")
    with pytest.raises(ValueError):
        await load_image_url(b"")


async def test_open_binary_file(tmp_path: pathlib.Path, open_file: Opener) -> None:
    """An open binary file is read and left open; its name is used in errors."""
    path = tmp_path / "cat.jpg"
    path.write_bytes(JPEG)
    file = open_file(path)
    assert await load_image_url(file) == data_url("image/jpeg", JPEG)
    assert not file.closed
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"cat\.jpg' is empty"):
        await load_image_url(open_file(path))


async def test_bytesio() -> None:
    """An in-memory binary stream (no .name) is accepted."""
    assert await load_image_url(io.BytesIO(GIF)) == data_url("image/gif", GIF)


async def test_file_over_limit_read_partially() -> None:
    """An open file longer than max_bytes is refused without reading all of it."""
    stream = io.BytesIO(PNG + bytes(1000))
    with pytest.raises(ImageError, match="limit of 10 bytes"):
        await load_image_url(stream, max_bytes=10)
    assert stream.tell() == 11


async def test_text_mode_file(tmp_path: pathlib.Path, open_file: Opener) -> None:
    """A file opened in text mode is refused with a hint to open it with 'rb'."""
    path = tmp_path / "a.png"
    path.write_text("not binary")
    with pytest.raises(ImageError, match="text mode; open it with 'rb'"):
        await load_image_url(open_file(path, "r"))


async def test_closed_file(tmp_path: pathlib.Path, open_file: Opener) -> None:
    """A closed file is refused with an ImageError carrying the original error."""
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    file = open_file(path)
    file.close()
    with pytest.raises(ImageError, match="could not be read") as info:
        await load_image_url(file)
    assert isinstance(info.value.__cause__, ValueError)


async def test_path_str_and_pathlib(tmp_path: pathlib.Path) -> None:
    """A path given as str or as pathlib.Path is read from disk."""
    path = tmp_path / "dog.webp"
    path.write_bytes(WEBP)
    expected = data_url("image/webp", WEBP)
    assert await load_image_url(str(path)) == expected
    assert await load_image_url(path) == expected


async def test_missing_path(tmp_path: pathlib.Path) -> None:
    """A missing file is refused as not found, with the path and the OSError as cause."""
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="image file not found: ") as info:
        await load_image_url(str(path))
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)
    with pytest.raises(ImageError, match="image file not found: "):
        await load_image_url(path)


async def test_directory(tmp_path: pathlib.Path) -> None:
    """A directory is refused as not a file."""
    with pytest.raises(ImageError, match="directory"):
        await load_image_url(tmp_path)


async def test_empty_file(tmp_path: pathlib.Path) -> None:
    """An empty file is refused as empty, naming the path."""
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="is empty") as info:
        await load_image_url(path)
    assert "empty.png" in str(info.value)


async def test_empty_string() -> None:
    """An empty string is refused as empty rather than looked up as a path."""
    with pytest.raises(ImageError, match="empty"):
        await load_image_url("")


async def test_file_over_limit_not_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than max_bytes is refused from its size, without being read."""
    path = tmp_path / "big.png"
    path.write_bytes(PNG + bytes(100))

    async def fail_read(self: Any) -> bytes:
        raise AssertionError("read_bytes must not be called")

    monkeypatch.setattr("anyio.Path.read_bytes", fail_read)
    with pytest.raises(ImageError, match=rf"{len(PNG) + 100} bytes.*limit of 10 bytes"):
        await load_image_url(path, max_bytes=10)


async def test_unknown_file_type(tmp_path: pathlib.Path) -> None:
    """A file that is not a supported image type is refused, naming the file."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just text")
    with pytest.raises(ImageError, match=r"notes\.txt.*only JPEG, PNG, GIF and WEBP"):
        await load_image_url(path)


async def test_data_uri_round_trip() -> None:
    """A base64 data: URI with the right MIME type comes back unchanged."""
    uri = data_url("image/png", PNG)
    assert await load_image_url(uri) == uri


async def test_data_uri_normalised() -> None:
    """A data: URI with a wrong, missing or oddly cased MIME type gets the sniffed one."""
    payload = base64.b64encode(JPEG).decode("ascii")
    expected = data_url("image/jpeg", JPEG)
    assert await load_image_url(f"data:image/png;base64,{payload}") == expected
    assert await load_image_url(f"data:;base64,{payload}") == expected
    assert await load_image_url(f"DATA:Image/JPEG;BASE64,{payload}") == expected


@pytest.mark.parametrize(
    "uri",
    [
        "data:image/png;base64",
        "data:image/png,rawtext",
        "data:image/png;base64,not base64!!",
        "data:image/png;base64,iVBORw0KGgo",
    ],
)
async def test_malformed_data_uri(uri: str) -> None:
    """Data URIs without a comma, not base64, or with invalid base64 are refused."""
    with pytest.raises(ImageError, match="data: URI"):
        await load_image_url(uri)


async def test_invalid_base64_keeps_cause() -> None:
    """Invalid base64 in a data: URI keeps the binascii error as the cause."""
    with pytest.raises(ImageError) as info:
        await load_image_url("data:image/png;base64,@@@@")
    assert isinstance(info.value.__cause__, binascii.Error)


async def test_data_uri_checks() -> None:
    """Decoded data: URI content is checked for emptiness, size and type."""
    with pytest.raises(ImageError, match="image is empty"):
        await load_image_url("data:image/png;base64,")
    with pytest.raises(ImageError, match="limit of 10 bytes"):
        await load_image_url(data_url("image/png", PNG), max_bytes=10)
    with pytest.raises(ImageError, match="limit of 10 bytes"):
        await load_image_url(data_url("image/png", PNG + bytes(100)), max_bytes=10)
    with pytest.raises(ImageError, match="only JPEG, PNG, GIF and WEBP"):
        await load_image_url(data_url("image/png", b"plain text"))


@pytest.mark.parametrize(
    "url", ["http://example.com/a.png", "https://example.com/a.png?x=1", "HTTP://EX.COM/B"]
)
async def test_url_passthrough(url: str) -> None:
    """http(s) URLs are returned unchanged and never fetched."""
    assert await load_image_url(url) == url


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(42, "int"), ({"url": "x"}, "dict"), (None, "NoneType"), (object(), "object"), (1.5, "float")],
)
async def test_unsupported_types(value: Any, type_name: str) -> None:
    """Values that are not images are refused, naming their type and what is expected."""
    with pytest.raises(ImageError, match=f"unsupported image value of type {type_name}; expected"):
        await load_image_url(value)


async def test_bad_tuples() -> None:
    """Tuples that are not an (image, name) pair are refused as unsupported."""
    for value in [(PNG,), (PNG, 3), ((PNG, "a"), "b"), (PNG, "a", "b")]:
        with pytest.raises(ImageError, match="unsupported image value of type tuple"):
            await load_image_url(value)  # type: ignore[arg-type]


async def test_tuple_name(tmp_path: pathlib.Path) -> None:
    """An (image, name) pair loads the image and puts the name in error messages."""
    assert await load_image_url((PNG, "logo")) == data_url("image/png", PNG)
    with pytest.raises(ImageError, match="'logo' is empty"):
        await load_image_url((b"", "logo"))
    with pytest.raises(ImageError, match=r"'shot\.bin'.*only JPEG"):
        await load_image_url((b"nope", "shot.bin"))
    with pytest.raises(ImageError, match="'avatar' file not found"):
        await load_image_url((tmp_path / "missing.png", "avatar"))


async def test_load_image_urls_order(tmp_path: pathlib.Path) -> None:
    """load_image_urls returns image first, then images, in order."""
    path = tmp_path / "b.gif"
    path.write_bytes(GIF)
    urls = await load_image_urls(PNG, [path, "https://example.com/c.png", (io.BytesIO(WEBP), "d")])
    assert urls == [
        data_url("image/png", PNG),
        data_url("image/gif", GIF),
        "https://example.com/c.png",
        data_url("image/webp", WEBP),
    ]
    assert await load_image_urls(images=(JPEG,)) == [data_url("image/jpeg", JPEG)]
    assert await load_image_urls(JPEG) == [data_url("image/jpeg", JPEG)]


async def test_load_image_urls_nothing() -> None:
    """load_image_urls with no images returns an empty list."""
    assert await load_image_urls() == []
    assert await load_image_urls(None, []) == []


async def test_load_image_urls_none_inside_images() -> None:
    """None inside images is refused as an unsupported value."""
    with pytest.raises(ImageError, match="type NoneType"):
        await load_image_urls(images=[PNG, None])  # type: ignore[list-item]


async def test_load_image_urls_single_value_as_images() -> None:
    """A lone str or bytes passed as images= is refused instead of being iterated."""
    with pytest.raises(ImageError, match="images= takes a list"):
        await load_image_urls(images="https://example.com/a.png")
    with pytest.raises(ImageError, match="images= takes a list"):
        await load_image_urls(images=PNG)  # type: ignore[arg-type]


async def test_load_image_urls_max_bytes() -> None:
    """max_bytes applies to every image in load_image_urls."""
    with pytest.raises(ImageError, match="limit of 10 bytes"):
        await load_image_urls(images=[PNG], max_bytes=10)
