"""Turn user image inputs into URLs for OpenAI-style ``image_url`` content parts.

Local data (bytes, files, paths, ``data:`` URIs) becomes a ``data:<mime>;base64,...`` URL
whose type is sniffed from magic bytes; http(s) URLs pass through untouched and are
never fetched. Every failure is an :class:`~asyncprov._errors.ImageError`.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import typing
from collections.abc import Iterable

from asyncprov._errors import ImageError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "ImageInput",
    "ImageValue",
    "is_image_url",
    "load_image_url",
    "load_image_urls",
    "sniff_image_type",
]

DEFAULT_MAX_IMAGE_BYTES: int = 20 * 1024 * 1024
"""Largest image, in decoded bytes, accepted by default."""

ImageValue: typing.TypeAlias = (
    bytes | bytearray | memoryview | str | os.PathLike[str] | typing.BinaryIO
)
ImageInput: typing.TypeAlias = ImageValue | tuple[ImageValue, str]

_ACCEPTED = "only JPEG, PNG, GIF and WEBP are accepted"
_EXPECTED = "expected bytes, a path, an open binary file, a data: URI or an http(s) URL"


def sniff_image_type(data: bytes) -> str | None:
    """Detect an image's MIME type from its leading magic bytes.

    Args:
        data: The image bytes (only the first 12 are looked at).

    Returns:
        ``"image/jpeg"``, ``"image/png"``, ``"image/gif"`` or ``"image/webp"``,
        or ``None`` when the bytes match none of them.
    """
    head = bytes(data[:12])
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_image_url(value: str) -> bool:
    """Tell whether ``value`` is an http:// or https:// URL (scheme case-insensitive).

    Args:
        value: The string to test.

    Returns:
        True for a remote URL that should be passed through unchanged.
    """
    return isinstance(value, str) and value[:8].lower().startswith(("http://", "https://"))


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "…"


def _subject(name: str | None) -> str:
    return "image" if name is None else f"image {_short(name)!r}"


def _too_large(
    name: str | None, size: int, max_bytes: int, *, at_least: bool = False
) -> ImageError:
    amount = f"at least {size}" if at_least else str(size)
    return ImageError(
        f"{_subject(name)} is {amount} bytes, over the limit of {max_bytes} bytes (max_bytes)"
    )


def _to_data_url(data: bytes, name: str | None, max_bytes: int) -> str:
    if not data:
        raise ImageError(f"{_subject(name)} is empty")
    if len(data) > max_bytes:
        raise _too_large(name, len(data), max_bytes)
    mime = sniff_image_type(data)
    if mime is None:
        raise ImageError(f"{_subject(name)} is not a recognised image type; {_ACCEPTED}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _decode_data_uri(uri: str, name: str | None, max_bytes: int) -> bytes:
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise ImageError(f"{_subject(name)} is a malformed data: URI (no ',' before the data)")
    if header.split(";")[-1].strip().lower() != "base64":
        raise ImageError(f"{_subject(name)} is a data: URI that is not base64-encoded")
    if (least := len(payload) // 4 * 3 - 2) > max_bytes:  # refuse before decoding
        raise _too_large(name, least, max_bytes, at_least=True)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{_subject(name)} is a data: URI with invalid base64 data") from exc


def _read_file(file: typing.Any, name: str | None, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total <= max_bytes:
        chunk = file.read(max_bytes + 1 - total)
        if isinstance(chunk, str):
            raise ImageError(f"{_subject(name)} is a file opened in text mode; open it with 'rb'")
        if not chunk:
            break
        chunks.append(bytes(chunk))
        total += len(chunk)
    if total > max_bytes:
        raise _too_large(name, total, max_bytes, at_least=True)
    return b"".join(chunks)


async def _load_path(path: str, name: str | None, max_bytes: int) -> bytes:
    import anyio  # imported on first use: keeps `import asyncprov` light

    where, shown, apath = f"{_subject(name)} file", _short(path), anyio.Path(path)
    try:
        info = await apath.stat()  # size first: a huge file is refused unread
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{where} is a directory, not a file: {shown}")
        if info.st_size > max_bytes:
            raise _too_large(name or path, info.st_size, max_bytes)
        return await apath.read_bytes()
    except FileNotFoundError as exc:
        raise ImageError(f"{where} not found: {shown}") from exc
    except OSError as exc:
        raise ImageError(f"{where} cannot be read: {shown} ({exc.strerror or exc})") from exc


def _unsupported(value: object) -> ImageError:
    return ImageError(f"unsupported image value of type {type(value).__name__}; {_EXPECTED}")


async def load_image_url(image: ImageInput, *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> str:
    """Turn one image input into a URL for an ``image_url`` content part.

    Args:
        image: Raw bytes (``bytes``, ``bytearray``, ``memoryview``), an open binary
            file, a file path (``str`` or ``os.PathLike``), a ``data:`` URI, an
            http(s) URL, or an ``(image, name)`` pair whose name is used in errors.
        max_bytes: Largest accepted image size in bytes, after decoding.

    Returns:
        A normalised ``data:<mime>;base64,...`` URL for local data, or the
        http(s) URL unchanged (it is never fetched).

    Raises:
        ImageError: The image is empty, too large, missing, unreadable, not JPEG,
            PNG, GIF or WEBP, a malformed data: URI, or of an unsupported type.
    """
    name: str | None = None
    value: object = image
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[1], str) or isinstance(value[0], tuple):
            raise _unsupported(value)
        value, name = value
    if isinstance(value, bytes | bytearray | memoryview):
        data = value if isinstance(value, bytes) else bytes(value)
        return _to_data_url(data, name, max_bytes)
    if isinstance(value, str):
        if is_image_url(value):
            return value
        if value[:5].lower() == "data:":
            return _to_data_url(_decode_data_uri(value, name, max_bytes), name, max_bytes)
        if not value:
            raise ImageError(f"{_subject(name)} is empty (an empty string is not a path)")
        return _to_data_url(await _load_path(value, name, max_bytes), name or value, max_bytes)
    if isinstance(value, os.PathLike):
        path = os.fsdecode(value)
        return _to_data_url(await _load_path(path, name, max_bytes), name or path, max_bytes)
    if callable(getattr(value, "read", None)):
        if name is None:
            file_name = getattr(value, "name", None)
            if isinstance(file_name, str | os.PathLike):
                name = os.fsdecode(file_name)
        try:
            import anyio.to_thread

            data = await anyio.to_thread.run_sync(_read_file, value, name, max_bytes)
        except ImageError:
            raise
        except (OSError, ValueError) as exc:  # e.g. a closed file
            raise ImageError(f"{_subject(name)} could not be read from its file: {exc}") from exc
        return _to_data_url(data, name, max_bytes)
    raise _unsupported(value)


async def load_image_urls(
    image: ImageInput | None = None,
    images: Iterable[ImageInput] | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> list[str]:
    """Turn the ``image=`` and ``images=`` arguments of a chat call into URLs.

    Args:
        image: One image, or None.
        images: Several images, or None; a lone str, bytes or path is refused
            so that a single image is not iterated character by character.
        max_bytes: Largest accepted size of each image in bytes.

    Returns:
        The URLs, ``image`` first and then ``images`` in order; empty if neither.

    Raises:
        ImageError: Any image cannot be used (see :func:`load_image_url`).
    """
    if isinstance(images, str | bytes | bytearray | memoryview | os.PathLike):
        raise ImageError("images= takes a list of images; pass a single image as image=")
    inputs: list[ImageInput] = [] if image is None else [image]
    if images is not None:
        inputs.extend(images)
    return [await load_image_url(item, max_bytes=max_bytes) for item in inputs]
