"""Input views: what a base model reads from a table, read in batches.

A view (``data.views.NAME`` in the config) turns the rows of a table into one model
input. Training, ``stacking predict`` and the served pyfunc model read views through
this module only, so they cannot disagree:

* ``{columns: [...] | "glob*", shape, dtype}``: numeric columns. A glob is resolved once,
  against the training table, and new tables are matched **by name** (columns in another
  order give the same array; a missing column is an error naming the table and column).
* ``{image: COLUMN, size: [H, W], channels: 1|3}``: a column of images, each an image
  file path (relative to the table's folder) or the image itself: ``bytes`` or a
  ``data:image/png;base64,…`` string. Pixels reach the model as float32 0-255, exactly as
  ``keras.utils.img_to_array(keras.utils.load_img(path, target_size=size))`` gives them;
  images are decoded batch by batch in a ``tf.data`` pipeline that overlaps with inference,
  so memory is bounded by the batch, never by the number of images. An
  :class:`ImageAccess` says which paths may be read and how much one image may cost: a
  training config is trusted, rows sent to a served model are not.
* ``{text: COLUMN}``: strings, shape ``(n, 1)``, for models that hold their own
  preprocessing (``TextVectorization``, ``StringLookup``).
* ``{array: {train: PATH, test: PATH}}``: a ``.npy`` file (memory-mapped) or
  ``file.npz:key``, row-aligned with the train (test) table, any per-row shape; new rows
  to serve carry it in a column (``array.column``) holding one array per row.

A :class:`ViewData` is what the engine and executors see: a row count, a per-row shape and
dtype, a content ``digest`` (cache keys: an edited image recomputes, a renamed folder does
not), ``take(rows)`` and ``batches(batch_size)``. It pickles (Ray ships it to workers).
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking.config import ViewConfig, split_array_location
from stacking.data import resolve_columns, view_array
from stacking.errors import DataError, DataFileNotFoundError, first_line


class ViewData(abc.ABC):
    """One model input for a set of rows; see the module docstring."""

    dtype: str  # numpy dtype name, or "string"

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]:
        """``(n_rows, *row_shape)``."""

    def __len__(self) -> int:
        return self.shape[0]

    @abc.abstractmethod
    def take(self, rows: np.ndarray) -> ViewData:
        """The view of a subset of rows (lazy where reading is expensive)."""

    @abc.abstractmethod
    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Consecutive arrays of at most ``batch_size`` rows."""

    @abc.abstractmethod
    def digest(self) -> str:
        """A digest of the content the model sees (not of paths or names)."""

    def to_numpy(self) -> np.ndarray:
        """Every row at once (tests and small views only)."""
        parts = list(self.batches(max(len(self), 1)))
        return parts[0] if parts else np.empty(self.shape, dtype=object)


class ArrayData(ViewData):
    """Rows already in memory, or memory-mapped (columns, text, arrays)."""

    def __init__(self, array: np.ndarray, dtype: str | None = None) -> None:
        self.array = array
        self.dtype = dtype or str(array.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def take(self, rows: np.ndarray) -> ArrayData:
        return ArrayData(self.array[rows], self.dtype)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.array), batch_size):
            yield np.asarray(self.array[start : start + batch_size])

    def digest(self) -> str:
        h = hashlib.sha256(f"{self.dtype}{self.array.shape}".encode())
        if self.dtype == "string":
            for value in self.array.ravel():
                h.update(str(value).encode() + b"\0")
        else:
            for batch in self.batches(1 << 16):
                h.update(np.ascontiguousarray(batch).tobytes())
        return h.hexdigest()


_file_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if key in _file_digests:
            return _file_digests[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with _digest_lock:
        _file_digests[key] = h.hexdigest()
    return _file_digests[key]


_log = logging.getLogger("stacking.serving")

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


class ImageData(ViewData):
    """Images decoded and resized batch by batch, as ``keras.utils.load_img`` does.

    Each item is a resolved file path (``str``) or the image's bytes.
    """

    dtype = "float32"

    def __init__(
        self,
        items: list[str | bytes],
        ids: list[Any],
        size: tuple[int, int],
        channels: int,
        *,
        access: ImageAccess | None = None,
        column: str = "image",
        rows: list[int] | None = None,
    ) -> None:
        self.items, self.ids = list(items), list(ids)
        self.size, self.channels = (int(size[0]), int(size[1])), int(channels)
        self.access = access or ImageAccess.trusted()
        self.column = column
        self.rows = list(rows) if rows is not None else list(range(len(self.items)))

    @property
    def paths(self) -> list[str | bytes]:
        return self.items

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.items), *self.size, self.channels)

    def take(self, rows: np.ndarray) -> ImageData:
        rows = np.asarray(rows)
        return ImageData(
            [self.items[i] for i in rows],
            [self.ids[i] for i in rows],
            self.size,
            self.channels,
            access=self.access,
            column=self.column,
            rows=[self.rows[i] for i in rows],
        )

    def _where(self, i: int) -> str:
        return f"row {self.rows[i]} (id {self.ids[i]!r}), column {self.column!r}"

    def _load(self, i: int) -> np.ndarray:
        import keras

        item, access = self.items[i], self.access
        try:
            data = item if isinstance(item, bytes) else _read_file(item, access.max_bytes)
            _check_header(data, access)
            mode = "grayscale" if self.channels == 1 else "rgb"
            image = keras.utils.load_img(io.BytesIO(data), color_mode=mode, target_size=self.size)
        except Exception as exc:  # PIL's own error types vary by format
            if access.private:
                reason = _NO_IMAGE_AT_PATH if isinstance(item, str) else _why_not_image(exc)
                _log.info("refused %s (%r): %s", self._where(i), item[:200], exc)
                raise RowDataError(f"{self._where(i)}: {reason}") from None
            what = "the image in" if isinstance(item, bytes) else f"image {item!r}"
            raise RowDataError(
                f"cannot read {what} (row id {self.ids[i]!r}): {first_line(exc)}; fix or "
                "remove the file, or drop the row"
            ) from exc
        return keras.utils.img_to_array(image, dtype="float32")

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        import tensorflow as tf

        errors: list[DataError] = []

        def load(i: np.ndarray) -> np.ndarray:
            try:
                return self._load(int(i))
            except DataError as exc:  # raised again below, outside TensorFlow's runtime
                errors.append(exc)
                return np.zeros((*self.size, self.channels), dtype=np.float32)

        n = len(self.items)
        dataset = (
            tf.data.Dataset.range(n)
            .map(
                lambda i: tf.numpy_function(load, [i], tf.float32, stateful=False),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .batch(batch_size)
            .prefetch(1)  # decode batch b + 1 while the model predicts batch b
        )
        for batch in dataset.as_numpy_iterator():
            if errors:
                raise errors[0]
            yield batch.reshape(len(batch), *self.size, self.channels)

    def digest(self) -> str:
        h = hashlib.sha256(f"image{self.size}{self.channels}".encode())
        for item in self.items:
            digest = file_digest(Path(item)) if isinstance(item, str) else _sha256(item)
            h.update(digest.encode())
        return h.hexdigest()


class RowDataError(DataError):
    """A row's own data cannot be read (its image): the message names the row, and no
    base model, since every model that reads the view would fail the same way (and for
    a served model, an error that differed by where it was raised would tell a client
    which of its paths name files)."""


class _ImageRefused(ValueError):
    """Why one image is not decoded (a limit or a format); quoted in a DataError."""


_NO_IMAGE_AT_PATH = (
    "no readable image at that path in the server's image folder; send the image itself "
    "as 'data:image/png;base64,<base64 bytes>'"
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_file(path: str, max_bytes: int | None) -> bytes:
    """A file's bytes, refused past ``max_bytes`` without reading the rest."""
    with open(path, "rb") as fh:
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise _ImageRefused(f"the image is larger than the limit of {max_bytes} bytes")
    return data


def _check_header(data: bytes, access: ImageAccess) -> None:
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


def _why_not_image(exc: BaseException) -> str:
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


def _base_folder(root: Path | None) -> Path:
    return root if root is not None else Path.cwd()


def _columns(frame: pd.DataFrame, spec: ViewConfig, source: str) -> ArrayData:
    return ArrayData(view_array(frame, spec, source=source))


def _column(frame: pd.DataFrame, name: str, what: str, source: str) -> pd.Series:
    resolve_columns(frame, [name], source=source)
    values = frame[name]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(
            f"{what} column {name!r} in {source} is empty at row {row}; fill or drop the row"
        )
    return values


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


def _image_item(value: Any, access: ImageAccess, where: str) -> str | bytes:
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
            raise DataError(f"{where}: {_NO_IMAGE_AT_PATH}") from None
        raise DataFileNotFoundError(
            f"image {text!r} ({where}) is not a file inside {str(access.root)!r}; paths are "
            "relative to the table's folder and may not leave it (choose another folder "
            "with --image-root)"
        ) from exc
    path = Path(text)
    path = path if path.is_absolute() else access.root / path
    if not path.is_file():
        raise DataFileNotFoundError(
            f"image {str(path)!r} ({where}) does not exist; paths are relative to the "
            "table's folder"
        )
    return str(path)


def _images(frame, spec: ViewConfig, source: str, access: ImageAccess, ids) -> ImageData:
    assert spec.image is not None and spec.size is not None
    items = []
    for i, value in enumerate(_column(frame, spec.image, "image", source)):
        where = (
            f"row {i} (id {ids[i]!r}), column {spec.image!r}"
            if access.private
            else f"row id {ids[i]!r}, column {spec.image!r} of {source}"
        )
        items.append(_image_item(value, access, where))
    height, width = spec.size  # ViewConfig checks that an image view has [height, width]
    return ImageData(
        items, list(ids), (height, width), spec.channels, access=access, column=spec.image
    )


def _text(frame, spec: ViewConfig, source: str) -> ArrayData:
    assert spec.text is not None
    values = _column(frame, spec.text, "text", source)
    return ArrayData(values.astype(str).to_numpy(dtype=object).reshape(-1, 1), "string")


def _load_array(location: str, source: str) -> np.ndarray:
    path_text, key = split_array_location(location)
    path = Path(path_text)
    if not path.is_file():
        raise DataFileNotFoundError(f"array file {str(path)!r} ({source}) does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                if key not in archive.files:
                    raise DataError(
                        f"{str(path)!r} has no array {key!r}; it holds {archive.files}. "
                        "Name one as PATH.npz:KEY"
                    )
                return archive[key]
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read array file {str(path)!r}: {exc}") from exc


def _array(frame, spec: ViewConfig, which: str, source: str) -> ArrayData:
    assert spec.array is not None
    location = {"train": spec.array.train, "test": spec.array.test}.get(which)
    if location is None:
        column = spec.array.column
        if column is None or column not in frame.columns:
            raise DataError(
                f"array view of {source}: new rows carry the array in a column; set "
                f"`array.column` and give each row its array there. Received: "
                f"column={column!r}"
            )
        array = np.stack([np.asarray(v) for v in frame[column]])
    else:
        array = _load_array(str(location), source)
    if len(array) != len(frame):
        raise DataError(
            f"array {str(location)!r} has {len(array)} rows but {source} has {len(frame)}; "
            "the array must be row-aligned with its table"
        )
    dtype = spec.dtype if spec.dtype != "float32" or array.dtype.kind == "f" else "float32"
    return ArrayData(array if str(array.dtype) == dtype else array.astype(dtype), dtype)


def read_view(
    frame: pd.DataFrame,
    spec: ViewConfig,
    *,
    which: str = "rows",
    source: str = "the input rows",
    root: Path | None = None,
    ids: Any = None,
    access: ImageAccess | None = None,
) -> ViewData:
    """The view of ``frame``'s rows; ``which`` is ``train``, ``test`` or ``rows`` (new
    rows to serve). Image views read paths as ``access`` allows (default: trusted, from
    ``root``, the folder relative image paths start from)."""
    # Plain Python values: an id is quoted in messages as the user wrote it (1750, not
    # np.int64(1750)).
    ids = list(np.asarray(ids).tolist()) if ids is not None else list(range(len(frame)))
    if spec.image is not None:
        access = access or ImageAccess.trusted(_base_folder(root))
        return _images(frame, spec, source, access, ids)
    if spec.text is not None:
        return _text(frame, spec, source)
    if spec.array is not None:
        return _array(frame, spec, which, source)
    return _columns(frame, spec, source)


def fix_columns(spec: ViewConfig, frame: pd.DataFrame, *, source: str) -> ViewConfig:
    """The view with a glob resolved against the training table, so that every other
    table is matched by those names."""
    if spec.columns is None or isinstance(spec.columns, list):
        return spec
    return spec.model_copy(update={"columns": resolve_columns(frame, spec.columns, source=source)})


def as_view_data(x: Any) -> ViewData:
    """A :class:`ViewData` from a view or a plain array (tests, the Python API)."""
    return x if isinstance(x, ViewData) else ArrayData(np.asarray(x))


def predict_in_batches(model: Any, inputs: list[Any], *, batch_size: int) -> np.ndarray:
    """``model.predict`` over the inputs' batches, read in step; one array of outputs."""
    views = [as_view_data(x) for x in inputs]
    if len(views[0]) == 0:
        empty = [np.zeros((0, *v.shape[1:]), dtype=_numpy_dtype(v)) for v in views]
        return model.predict(empty, batch_size=batch_size)
    parts = [
        np.asarray(model.predict(list(batch), batch_size=batch_size))
        for batch in zip(*(v.batches(batch_size) for v in views))
    ]
    return np.concatenate(parts, axis=0)


def _numpy_dtype(view: ViewData) -> Any:
    return object if view.dtype == "string" else view.dtype
