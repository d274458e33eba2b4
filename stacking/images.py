"""Image bytes for image views: from the row itself or from a path, as far as allowed.

An image column holds, per row, a file path or the image itself (``bytes``, or a string
``data:<media type>;base64,<bytes>``). What a path may reach and how much one image may cost
depends on who wrote the rows, an :class:`ImageAccess`:

* a training config is trusted like a script: paths relative to the table's folder,
  absolute paths allowed, errors that name the file;
* ``stacking predict`` and the Python predictor: paths confined to a folder;
* a served model: no path unless the operator chose an image folder, bytes and pixels
  bounded (pixels from the header, before decoding), a few formats, and errors that name
  the row and never a server path nor whether a file exists.

:mod:`stacking.views` decodes what this module hands it.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacking.errors import DataError, DataFileNotFoundError

# A cell holding the image itself: ``data:[<media type>];base64,<bytes>`` (RFC 2397). The
# media type is not trusted: the decoder reads the format from the bytes.
_DATA_URI = re.compile(r"data:[^,;]*;base64,", re.IGNORECASE)
# What a cell without the prefix would start with if it were a base64 image (PNG, JPEG, GIF,
# WebP): such a cell is refused with the fix instead of being taken for a path.
_BARE_BASE64 = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR")
# The formats a served model decodes; others (PostScript, which runs Ghostscript, and
# dozens of rarely used parsers) are refused before a decoder sees the bytes.
SERVING_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


@dataclass(frozen=True)
class ImageAccess:
    """Where an image view may read images from, and how much one image may cost.

    * ``root``: the folder relative paths start from; ``None`` reads no path at all (the
      rows must carry the images themselves).
    * ``confined``: paths must stay inside ``root``: absolute paths, ``..`` and symlinks
      that resolve outside it are refused.
    * ``private``: the rows come from someone who must not learn about the server's
      files: errors name the row and what was wrong with its data, never a path, and
      say the same for a missing file, a file outside ``root`` and a file that is not an
      image.
    * ``max_bytes`` / ``max_pixels``: per image; pixels are checked from the image's
      header, before it is decoded. ``formats``: the image formats decoded (PIL names).

    >>> ImageAccess.trusted(Path("data"))    # a training config: the user's own files
    >>> ImageAccess.local(Path("data"))      # stacking predict: paths stay inside data/
    >>> ImageAccess.serving()                # a served model: images in the rows only
    """

    root: Path | None = None
    confined: bool = True
    private: bool = False
    max_bytes: int | None = None
    max_pixels: int | None = None
    formats: tuple[str, ...] | None = None

    @classmethod
    def trusted(cls, root: Path | None = None) -> ImageAccess:
        """A config's own tables: relative paths from ``root`` (default: the working
        folder), absolute paths allowed, errors that name the file."""
        return cls(root=root if root is not None else Path.cwd(), confined=False)

    @classmethod
    def local(cls, root: Path | None = None) -> ImageAccess:
        """Rows a local user predicts: paths relative to ``root`` and confined to it."""
        return cls(root=root if root is not None else Path.cwd(), confined=True)

    @classmethod
    def serving(
        cls,
        root: Path | None = None,
        *,
        max_bytes: int = 10 * 2**20,
        max_pixels: int = 25_000_000,
    ) -> ImageAccess:
        """Rows sent to a served model: images in the rows, paths only under ``root``
        when the operator set one, bounded work, errors that reveal nothing."""
        return cls(
            root=root,
            confined=True,
            private=True,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            formats=SERVING_FORMATS,
        )


class RowDataError(DataError):
    """A row's own data cannot be read (its image): the message names the row, and no
    base model, since every model that reads the view would fail the same way (and for
    a served model, an error that differed by where it was raised would tell a client
    which of its paths name files)."""


class _ImageRefused(ValueError):
    """Why one image is not decoded (a limit or a format); quoted in a DataError."""


NO_IMAGE_AT_PATH = (
    "no readable image at that path in the server's image folder; send the image itself "
    "as 'data:image/png;base64,<base64 bytes>'"
)


def read_image_bytes(path: str, max_bytes: int | None) -> bytes:
    """A file's bytes, refused past ``max_bytes`` without reading the rest."""
    with open(path, "rb") as fh:
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise _ImageRefused(f"the image is larger than the limit of {max_bytes} bytes")
    return data


def check_header(data: bytes, access: ImageAccess) -> None:
    """Refuse a format or a pixel count from the image's header, before decoding it.

    PIL reads only the header in ``Image.open``; its own decompression-bomb check (89
    million pixels) raises there too, and is reported as the same limit.
    """
    if access.max_pixels is None and access.formats is None:
        return
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=access.formats) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _ImageRefused(
            f"the image has more pixels than the limit of {access.max_pixels}"
        ) from None
    if access.max_pixels is not None and width * height > access.max_pixels:
        raise _ImageRefused(
            f"the image is {width}x{height} = {width * height} pixels, more than the limit "
            f"of {access.max_pixels}"
        )


def refusal_reason(exc: BaseException) -> str:
    """A client's reason for an image sent in a row: a limit, or not an image at all."""
    if isinstance(exc, _ImageRefused):
        return str(exc)
    formats = ", ".join(SERVING_FORMATS)
    return f"the bytes sent are not a readable image (one of {formats})"


def _decode_content(value: Any) -> bytes | None:
    """The image bytes a cell carries, or ``None`` when the cell is a path."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        return None
    match = _DATA_URI.match(value)
    if match is None:
        if value[:6].lower().startswith("data:"):
            raise _ImageRefused(
                "a data: URI must be base64-encoded: 'data:image/png;base64,<base64 bytes>'"
            )
        if len(value) > 256 and value.startswith(_BARE_BASE64):
            raise _ImageRefused(
                "this looks like base64 image bytes without their prefix; send "
                "'data:image/png;base64,' followed by them"
            )
        return None
    try:
        return base64.b64decode(value[match.end() :], validate=True)
    except binascii.Error:
        raise _ImageRefused(
            "the data: URI is not valid base64 (standard alphabet, '=' padding, no spaces)"
        ) from None


def _confined_path(value: str, access: ImageAccess) -> str:
    """The real path of ``value`` under ``access.root``; raises ``_ImageRefused`` (a
    path's own fault: absolute, ``..``) or ``FileNotFoundError`` (anything that needs
    the file system to tell: missing, a symlink out of the root, not a file, too large)."""
    assert access.root is not None
    path = Path(value)
    if path.is_absolute() or value.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", value):
        raise _ImageRefused("absolute paths are refused; give a path relative to the image folder")
    if ".." in re.split(r"[/\\]", value):
        raise _ImageRefused("paths with '..' are refused; give a path inside the image folder")
    root = os.path.realpath(access.root)
    real = os.path.realpath(os.path.join(root, value))
    if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        raise FileNotFoundError(real)
    if access.max_bytes is not None and os.path.getsize(real) > access.max_bytes:
        raise FileNotFoundError(real)  # the same answer: a client learns nothing from it
    return real


def image_item(value: Any, access: ImageAccess, where: str) -> str | bytes:
    """One cell of an image column as a resolved path or the image's bytes."""
    try:
        content = _decode_content(value)
        if content is not None:
            if access.max_bytes is not None and len(content) > access.max_bytes:
                raise _ImageRefused(
                    f"the image is {len(content)} bytes, more than the limit of {access.max_bytes}"
                )
            return content
        text = str(value)
        if access.root is None:
            raise _ImageRefused(
                "this model reads no files on the server; send the image itself as "
                "'data:image/png;base64,<base64 bytes>'"
            )
        if access.confined:
            return _confined_path(text, access)
    except _ImageRefused as exc:
        if access.private or access.root is None:
            raise DataError(f"{where}: {exc}") from None
        raise DataError(
            f"{where}: {exc}; paths are relative to {str(access.root)!r} (choose another "
            "folder with --image-root, or root= in Python)"
        ) from None
    except FileNotFoundError as exc:
        if access.private:
            raise DataError(f"{where}: {NO_IMAGE_AT_PATH}") from None
        raise DataFileNotFoundError(
            f"image {text!r} ({where}) is not a file inside {str(access.root)!r}; paths are "
            "relative to that folder and may not leave it (choose another folder with "
            "--image-root, or root= in Python)"
        ) from exc
    path = Path(text)
    path = path if path.is_absolute() else access.root / path
    if not path.is_file():
        raise DataFileNotFoundError(
            f"image {str(path)!r} ({where}) does not exist; paths are relative to the "
            "table's folder"
        )
    return str(path)
