"""Training and test tables: rows, ids, target, task, input views and a content digest.

A :class:`Dataset` holds the training rows (and optional test rows) exactly as read,
plus the encoded target every later stage uses:

* binary / multiclass: ``y`` holds class indices ``0..C-1`` into ``classes``;
* multilabel: ``y`` is the ``(n, L)`` 0/1 indicator, ``classes`` the label columns;
* regression: ``y`` is float.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking.config import DataConfig, ViewConfig
from stacking.errors import DataError, DataFileNotFoundError, did_you_mean

ROW_ID = "row_id"
_MAX_CLASSES_FOR_AUTO = 50


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; the error names the file and the supported formats."""
    if not path.exists():
        raise DataFileNotFoundError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if suffix in {".csv", ".txt"}:
            return pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    raise DataError(f"data file {str(path)!r} has suffix {suffix!r}; use .csv or .parquet")


def table_digest(frame: pd.DataFrame) -> str:
    """A content digest of a table: same rows, columns and values give the same digest."""
    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def infer_task(target: pd.Series | pd.DataFrame) -> str:
    """``multilabel`` for several target columns, else by the values of the one."""
    if isinstance(target, pd.DataFrame):
        return "multilabel"
    values = target.dropna()
    n_unique = values.nunique()
    if n_unique <= 2:
        return "binary"
    is_float = pd.api.types.is_float_dtype(values)
    if is_float and not np.all(np.equal(np.mod(values.to_numpy(), 1), 0)):
        return "regression"
    if pd.api.types.is_numeric_dtype(values) and n_unique > _MAX_CLASSES_FOR_AUTO:
        return "regression"
    return "multiclass"


@dataclass
class Dataset:
    """Training rows (and test rows) with the encoded target; see the module docstring."""

    train: pd.DataFrame
    ids: np.ndarray
    y: np.ndarray
    task: str
    classes: list
    id_column: str
    target: str | list[str]
    digest: str
    sample_weight: np.ndarray | None = None
    test: pd.DataFrame | None = None
    test_ids: np.ndarray | None = None
    test_y: np.ndarray | None = None  # the test rows' encoded target, when they carry it
    source: dict[str, str] = field(default_factory=dict)
    views: dict[str, ViewConfig] = field(default_factory=dict)  # data.views, by name

    @property
    def target_columns(self) -> list[str]:
        """The target as a list of column names (one, or the labels of multilabel)."""
        return self.target if isinstance(self.target, list) else [self.target]

    @property
    def n_outputs(self) -> int:
        """Columns in one model's prediction: classes, labels, or 1 for regression."""
        return 1 if self.task == "regression" else len(self.classes)

    def output_names(self) -> list[str]:
        """Names of one model's prediction columns (``pred`` for regression)."""
        return ["pred"] if self.task == "regression" else [str(c) for c in self.classes]

    def view(self, spec: ViewConfig | str, *, which: str = "train") -> np.ndarray:
        """The array a model reads from the train (or test) rows; see :func:`view_array`.

        ``spec`` is a view of ``data.views`` by name, or a :class:`ViewConfig`::

            x = data.view("x")                   # the training rows, as the models read them
            x_test = data.view("x", which="test")
        """
        if isinstance(spec, str):
            if spec not in self.views:
                raise DataError(
                    f"Dataset.view: no view {spec!r} in data.views (defined: "
                    f"{sorted(self.views)}){did_you_mean(spec, self.views)}"
                )
            spec = self.views[spec]
        if not isinstance(spec, ViewConfig):
            raise DataError(
                f"Dataset.view takes a view name or a ViewConfig. Received: {spec!r:.80}; "
                f"pass one of {sorted(self.views)}"
            )
        if which not in ("train", "test"):
            raise DataError(f"Dataset.view: which must be 'train' or 'test'. Received: {which!r}")
        frame = self.train if which == "train" else self.test
        if frame is None:
            raise DataError(
                "Dataset.view: no test rows, data.test is not configured. "
                f"Received: which={which!r}; set data.test in the config or use which='train'"
            )
        return view_array(frame, spec, source=self.source.get(which, which))


def view_array(frame: pd.DataFrame, spec: ViewConfig, *, source: str) -> np.ndarray:
    """The view's columns of ``frame``, cast to its dtype, reshaped to ``spec.shape``.

    Column views only; :func:`stacking.views.read_view` reads every kind of view.
    """
    if spec.columns is None:
        raise DataError(f"a {spec.kind} view is read by stacking.views.read_view, not here")
    columns = resolve_columns(frame, spec.columns, source=source)
    try:
        array = frame[columns].to_numpy(dtype=spec.dtype)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"view {spec.columns!r} in {source} has values that are not {spec.dtype}: {exc}; "
            "select numeric columns only"
        ) from exc
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = [c for c, ok in zip(columns, np.isfinite(array).all(axis=0)) if not ok]
        raise DataError(
            f"view {spec.columns!r} in {source} has missing or infinite values in {bad[:5]}; "
            "impute or drop them: a frozen model cannot predict them"
        )
    if spec.shape is not None:
        size = int(np.prod(spec.shape))
        if size != len(columns):
            raise DataError(
                f"view {spec.columns!r} in {source} has {len(columns)} columns but shape "
                f"{spec.shape} needs {size}; fix the columns or the shape"
            )
        array = array.reshape(len(frame), *spec.shape)
    return array


def resolve_columns(frame: pd.DataFrame, columns: list[str] | str, *, source: str) -> list[str]:
    """Expand a glob (``px_*``) or check a list of columns against ``frame``."""
    names = [str(c) for c in frame.columns]
    if isinstance(columns, str):
        matched = [c for c in names if fnmatch.fnmatchcase(c, columns)]
        if not matched:
            raise DataError(f"no column of {source} matches {columns!r}; columns are {names[:8]}…")
        return matched
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(
            f"{source} has no column(s) {missing}; columns are {names[:8]}…"
            f"{did_you_mean(missing[0], names)}"
        )
    return list(columns)


def _encode_target(
    frame: pd.DataFrame, cfg: DataConfig, source: str
) -> tuple[np.ndarray, str, list]:
    targets = cfg.target if isinstance(cfg.target, list) else [cfg.target]  # no Dataset yet
    resolve_columns(frame, targets, source=source)
    raw = frame[targets] if isinstance(cfg.target, list) else frame[cfg.target]
    if raw.isna().to_numpy().any():
        raise DataError(f"target {cfg.target!r} in {source} has missing values; drop those rows")
    task = infer_task(raw) if cfg.task == "auto" else cfg.task
    if task == "multilabel" and cfg.classes is not None:
        raise DataError(
            f"data.classes orders the classes of a binary or multiclass target; "
            f"{cfg.target!r} in {source} is a multilabel target. Remove data.classes"
        )
    if task == "multilabel":
        values = raw.to_numpy() if isinstance(raw, pd.DataFrame) else None
        if values is None or not np.isin(values, [0, 1]).all():
            raise DataError(
                f"multilabel target {cfg.target!r} in {source} must be a list of 0/1 columns"
            )
        return values.astype(int), task, list(targets)
    if isinstance(raw, pd.DataFrame):
        raise DataError(f"task {task!r} takes one target column. Received: {cfg.target!r}")
    if cfg.classes is not None and task == "regression":
        raise DataError(
            f"data.classes orders the classes of a binary or multiclass target; "
            f"{cfg.target!r} in {source} is a {task} target. Remove data.classes"
        )
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(raw):
            raise DataError(f"regression target {cfg.target!r} in {source} is not numeric")
        return raw.to_numpy(dtype=float), task, []
    classes = class_order(raw.unique().tolist(), cfg.classes, target=cfg.target, source=source)
    looks_like = infer_task(raw)  # the advice follows the values, not the declaration
    if task == "binary" and len(classes) != 2:
        advice = (
            f"Set data.task to {looks_like} (the values look like a {looks_like} target) or "
            "fix the target"
            if len(classes) > 2
            else "Fix the target: it needs two classes"
        )
        raise DataError(
            f"task binary needs 2 classes in {cfg.target!r}; {source} has {len(classes)}: "
            f"{classes[:10]}. {advice}"
        )
    if task == "multiclass" and looks_like == "regression" and pd.api.types.is_float_dtype(raw):
        raise DataError(
            f"task multiclass needs class labels in {cfg.target!r}; {source} has "
            f"{len(classes)} distinct fractional values such as {classes[:3]}. Set data.task "
            "to regression (its values look continuous) or fix the target"
        )
    if len(classes) < 2:
        raise DataError(f"target {cfg.target!r} in {source} has a single class {classes}")
    y = pd.Categorical(raw, categories=classes).codes.astype(int)
    return y, ("binary" if len(classes) == 2 else "multiclass"), classes


def _encode_test_target(
    test: pd.DataFrame, cfg: DataConfig, task: str, classes: list, source: str
) -> np.ndarray | None:
    """The test rows' target encoded like training's, or ``None`` when it is absent.

    A labelled test table is a holdout: every leaderboard entry is also scored on it.
    """
    targets = cfg.target if isinstance(cfg.target, list) else [cfg.target]
    if not all(t in test.columns for t in targets):
        return None
    raw = test[targets]
    if raw.isna().to_numpy().any():
        raise DataError(
            f"target {cfg.target!r} in {source} has missing values; drop the column to "
            "predict without a holdout score, or fill it"
        )
    if task == "multilabel":
        return raw.to_numpy().astype(int)
    if task == "regression":
        return raw[targets[0]].to_numpy(dtype=float)
    codes = pd.Categorical(raw[targets[0]], categories=classes).codes.astype(int)
    if (codes < 0).any():
        unknown = raw[targets[0]][codes < 0].unique().tolist()[:5]
        raise DataError(
            f"target {cfg.target!r} in {source} has classes {unknown} that the training "
            f"rows do not have ({classes[:10]}); a holdout needs the training classes"
        )
    return codes


def _with_row_id(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if ROW_ID in frame.columns:
        raise DataError(
            f"{source} already has a column {ROW_ID!r}; set data.id: {ROW_ID} to use it as the id"
        )
    frame = frame.reset_index(drop=True)
    frame.insert(0, ROW_ID, np.arange(len(frame)))
    return frame


def _ids(frame: pd.DataFrame, id_column: str, source: str) -> np.ndarray:
    """The id column, refused with ``data.id`` and the file named if absent or incomplete.

    A missing id would otherwise surface later as a misleading fold-plan mismatch or as a
    NaN id in the results.
    """
    if id_column not in frame.columns:
        names = [str(c) for c in frame.columns]
        raise DataError(
            f"{source} has no column(s) [{id_column!r}] named by data.id; columns are "
            f"{names[:8]}…; fix data.id, or remove it to use row numbers"
            f"{did_you_mean(id_column, names)}"
        )
    missing = frame[id_column].isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise DataError(
            f"data.id column {id_column!r} in {source} is empty in {rows.size} row(s), e.g. "
            f"row {int(rows[0])}; give every row an id, or remove data.id to use row numbers"
        )
    return frame[id_column].to_numpy()


def load_dataset(cfg: DataConfig) -> Dataset:
    """Read ``cfg.train`` (and ``cfg.test``) and encode the target."""
    train = read_table(cfg.train)
    source = str(cfg.train)
    if len(train) == 0:
        raise DataError(f"{source} has no rows")
    id_column = cfg.id or ROW_ID
    if cfg.id is None:
        train = _with_row_id(train, source)
    ids = _ids(train, id_column, source)
    if pd.Series(ids).duplicated().any():
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()[0]  # a Python scalar
        raise DataError(f"id column {id_column!r} in {source} has duplicates, e.g. {dup!r}")
    y, task, classes = _encode_target(train, cfg, source)
    weight = None
    if cfg.weight is not None:
        resolve_columns(train, [cfg.weight], source=source)
        if not pd.api.types.is_numeric_dtype(train[cfg.weight]):
            raise DataError(
                f"weight column {cfg.weight!r} in {source} must be numeric. "
                f"Received dtype {train[cfg.weight].dtype}"
            )
        weight = train[cfg.weight].to_numpy(dtype=float)
        if not np.all(np.isfinite(weight)) or (weight < 0).any():
            raise DataError(f"weight column {cfg.weight!r} in {source} must be finite and >= 0")
    test, test_ids, test_y, sources = None, None, None, {"train": source}
    if cfg.test is not None:
        test = read_table(cfg.test)
        sources["test"] = str(cfg.test)
        if cfg.id is None:
            test = _with_row_id(test, str(cfg.test))
        test_ids = _ids(test, id_column, str(cfg.test))
        test_y = _encode_test_target(test, cfg, task, classes, str(cfg.test))
    return Dataset(
        train=train,
        ids=ids,
        y=y,
        task=task,
        classes=classes,
        id_column=id_column,
        target=cfg.target,
        digest=table_digest(train),
        sample_weight=weight,
        test=test,
        test_ids=test_ids,
        test_y=test_y,
        source=sources,
        views=dict(cfg.views),
    )


def class_order(found: list, declared: list | None, *, target: Any, source: str) -> list:
    """The classes of a target in model-output order: ``declared`` (``data.classes``) when
    given, else sorted.

    Declared classes are matched to the target's values by their text, so ``[1, 2]`` in
    YAML orders a target read as integers or as strings alike; the values returned are
    the target's own. Every class must be declared exactly once: a model's output column
    *j* is class *j*, so a missing or extra class would shift every column after it.
    """
    if declared is None:
        return sorted(found)
    by_text = {str(value): value for value in found}
    names = [str(value) for value in declared]
    repeated = sorted({n for n in names if names.count(n) > 1})
    missing = sorted(set(by_text) - set(names))
    extra = [n for n in names if n not in by_text]
    if repeated or missing or extra:
        problems = [
            f"{what} {values}"
            for what, values in (
                ("misses", missing),
                ("names classes the target does not have:", extra),
                ("repeats", repeated),
            )
            if values
        ]
        raise DataError(
            f"data.classes {names} {'; '.join(problems)} (target {target!r} in {source} has "
            f"{sorted(by_text)}); list every class of the target once, in the models' output "
            "order"
        )
    return [by_text[n] for n in names]
