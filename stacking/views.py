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
  :class:`~stacking.images.ImageAccess` says which paths may be read and how much one
  image may cost: a training config is trusted, rows sent to a served model are not.
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
import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking.config import ViewConfig, split_array_location
from stacking.data import resolve_columns, view_array
from stacking.errors import DataError, DataFileNotFoundError, first_line
from stacking.images import (
    NO_IMAGE_AT_PATH,
    ImageAccess,
    RowDataError,
    check_header,
    image_item,
    read_image_bytes,
    refusal_reason,
)

_log = logging.getLogger("stacking.serving")


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
            data = item if isinstance(item, bytes) else read_image_bytes(item, access.max_bytes)
            check_header(data, access)
            mode = "grayscale" if self.channels == 1 else "rgb"
            image = keras.utils.load_img(io.BytesIO(data), color_mode=mode, target_size=self.size)
        except Exception as exc:  # PIL's own error types vary by format
            if access.private:
                reason = NO_IMAGE_AT_PATH if isinstance(item, str) else refusal_reason(exc)
                _log.info("refused %s (%r): %s", self._where(i), item[:200], exc)
                raise RowDataError(f"{self._where(i)}: {reason}") from None
            what = "the image in" if isinstance(item, bytes) else f"image {item!r}"
            # PIL names the in-memory buffer it read ("<_io.BytesIO object at 0x…>").
            unknown = type(exc).__name__ == "UnidentifiedImageError"
            detail = "not an image file PIL can read" if unknown else first_line(exc)
            raise RowDataError(
                f"cannot read {what} (row id {self.ids[i]!r}): {detail}; fix or "
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


def _images(
    frame: pd.DataFrame, spec: ViewConfig, source: str, access: ImageAccess, ids: list[Any]
) -> ImageData:
    assert spec.image is not None and spec.size is not None
    items = []
    for i, value in enumerate(_column(frame, spec.image, "image", source)):
        where = (
            f"row {i} (id {ids[i]!r}), column {spec.image!r}"
            if access.private
            else f"row id {ids[i]!r}, column {spec.image!r} of {source}"
        )
        items.append(image_item(value, access, where))
    height, width = spec.size  # ViewConfig checks that an image view has [height, width]
    return ImageData(
        items, list(ids), (height, width), spec.channels, access=access, column=spec.image
    )


def _text(frame: pd.DataFrame, spec: ViewConfig, source: str) -> ArrayData:
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


def _array(frame: pd.DataFrame, spec: ViewConfig, which: str, source: str) -> ArrayData:
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
