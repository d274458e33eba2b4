"""Prediction files as a base model: the honest predictions of a model trained anywhere.

A LightGBM / XGBoost / PyTorch model trained in its own notebook leaves two tables: its
out-of-fold predictions of the training rows and its predictions of the test rows. They
are DESIGN.md's first honest way (cross-fitted fold models) without the models, so they
are held to the same rule: the OOF file says in which fold each row was predicted, and
that assignment must equal the experiment's fold plan row for row (export it first with
``stacking folds``), otherwise row *i* may come from a model that trained on it.

File format (CSV or Parquet; rows in any order, matched by the data's id column):

* OOF file: the id column, ``fold``, and one column per output: each class name
  (classification), each label (multilabel), or ``prediction`` (regression);
* test file: the id column and the same output columns.

Every training (test) id appears exactly once; values are finite; probabilities lie in
[0, 1]; a class row sums to 1 within :data:`SUM_TOLERANCE`. A binary member keeps the
positive class's column (the negative one is ``1 - p``, as a binary model output is
read), so that the rows served with only its level-1 column give the same predictions.

A prediction-file member has no model: rows to serve carry its predictions in columns
named as its level-1 features (``<model>__<class>``, ``<model>__pred``), see
:func:`served_columns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stacking.base._digest import path_digest
from stacking.config import PredictionFilesConfig
from stacking.errors import BaseModelError, DataError, DataFileNotFoundError, LeakageError

#: How far a class-probability row's sum may be from 1 (float32 and CSV round trips).
SUM_TOLERANCE = 1e-3
FOLD_COLUMN = "fold"
REGRESSION_COLUMN = "prediction"
_FIX_FOLDS = (
    "train the model on the plan `stacking folds CONFIG --output folds.csv` writes, or run "
    "the experiment on the folds the model was trained on (`folds: {file: folds.csv}`)"
)


@dataclass
class PredictionFiles:
    """A prediction-file member's checked predictions, aligned with the data's rows.

    ``oof`` is ``(n_train, k)`` in the training rows' order, ``test`` ``(n_test, k)`` in the
    test rows' order (None without test rows); ``k`` is 1 for binary (the positive class)
    and regression, else one column per class or label. ``digests`` are the files' sha256.
    """

    name: str
    oof: np.ndarray = field(repr=False)
    test: np.ndarray | None = field(repr=False)
    digests: dict[str, str]


def file_columns(task: str, output_names: list[str]) -> list[str]:
    """The output columns a prediction file holds for ``task``."""
    return [REGRESSION_COLUMN] if task == "regression" else list(output_names)


def served_columns(name: str, task: str, output_names: list[str]) -> list[str]:
    """The columns rows to serve carry for member ``name``: its level-1 feature names."""
    names = output_names[1:] if task == "binary" else output_names
    return [f"{name}__{n}" for n in names]


def read_table(path: Path, *, what: str) -> pd.DataFrame:
    """A CSV or Parquet file, its ids parsed as the data's are (:func:`stacking.data.read_table`),
    so that the same text gives the same id on both sides."""
    if not path.is_file():
        raise DataFileNotFoundError(f"{what}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{what}: cannot read {str(path)!r}: {first}") from exc
    raise DataError(
        f"{what}: {str(path)!r} is neither CSV nor Parquet. Received suffix {suffix!r}; "
        "write the predictions as .csv or .parquet"
    )


def _align(frame: pd.DataFrame, ids: np.ndarray, *, what: str, id_column: str) -> np.ndarray:
    """Row positions of ``ids`` in ``frame``: every id exactly once, no other id."""
    if id_column not in frame.columns:
        raise DataError(
            f"{what} has no id column {id_column!r} (columns: {list(frame.columns)[:8]}); "
            "name the column of row ids as data.id does"
        )
    got = frame[id_column].astype(str).to_numpy()
    want = np.asarray(ids).astype(str)
    seen = pd.Index(got)
    if seen.has_duplicates:
        dup = seen[seen.duplicated()].unique().tolist()[:3]
        raise DataError(f"{what} repeats id(s) {dup}; each row's id must appear exactly once")
    extra = seen.difference(pd.Index(want))
    if len(extra):
        raise DataError(
            f"{what} has {len(extra)} id(s) that are not rows of the data, e.g. "
            f"{extra[:3].tolist()}; predict exactly the data's rows"
        )
    where = seen.get_indexer(pd.Index(want))
    if (where < 0).any():
        missing = want[where < 0]
        raise DataError(
            f"{what} lacks {len(missing)} of the data's id(s), e.g. {missing[:3].tolist()}; "
            "predict every row exactly once"
        )
    return where


def _values(
    frame: pd.DataFrame,
    rows: np.ndarray,
    ids: np.ndarray,
    *,
    what: str,
    task: str,
    columns: list[str],
) -> np.ndarray:
    """The output columns, by name, checked to be predictions of ``task``."""
    names = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in names]
    if missing:
        others = [c for c in names if c not in columns]
        raise DataError(
            f"{what} has no column(s) {missing} (other columns: {others[:8]}); it needs one "
            f"column per output named {columns} in any order"
        )
    table = frame.set_axis(names, axis=1)[columns].iloc[rows]
    try:
        values = table.to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what}: output columns {columns} must be numbers ({exc})") from exc
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise DataError(
            f"{what}: column {columns[c]!r} is NaN or infinite at id "
            f"{ids[r]!r}; every row needs a finite prediction"
        )
    if task == "regression":
        return values
    bad = (values < 0.0) | (values > 1.0)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(
            f"{what}: column {columns[c]!r} holds {values[r, c]!r} at id {ids[r]!r}, outside "
            "[0, 1]; give "
            "probabilities (apply softmax/sigmoid to scores first)"
        )
    if task in ("binary", "multiclass"):
        off = np.abs(values.sum(axis=1) - 1.0)
        if off.size and off.max() > SUM_TOLERANCE:
            r = int(np.argmax(off))
            raise DataError(
                f"{what}: the class columns of id {ids[r]!r} sum to {values[r].sum():.6f}, not 1 "
                f"(tolerance {SUM_TOLERANCE}); give every class's probability"
            )
    return values[:, 1:] if task == "binary" else values


def _check_folds(
    name: str,
    path: Path,
    frame: pd.DataFrame,
    rows: np.ndarray,
    ids: np.ndarray,
    plan_folds: np.ndarray,
) -> None:
    """The OOF file's folds must be the experiment's plan, row for row."""
    what = f"base model {name!r}: OOF file {str(path)!r}"
    if FOLD_COLUMN not in frame.columns:
        raise LeakageError(
            f"{what} has no {FOLD_COLUMN!r} column, so it cannot show that each row was "
            f"predicted by a model that never trained on it; add it and {_FIX_FOLDS}"
        )
    raw = frame[FOLD_COLUMN].iloc[rows]
    if raw.isna().any() or not pd.api.types.is_integer_dtype(raw):
        raise LeakageError(
            f"{what}: column {FOLD_COLUMN!r} must hold integer folds 0..K-1 (-1: reserved)"
        )
    differ = np.flatnonzero(raw.to_numpy() != np.asarray(plan_folds))
    if differ.size:
        shown = ", ".join(
            f"{ids[i]!r} (file {raw.iloc[i]}, plan {plan_folds[i]})" for i in differ[:3]
        )
        raise LeakageError(
            f"{what}: {differ.size} row(s) were predicted in another fold than the "
            f"experiment's plan puts them in: {shown}; {_FIX_FOLDS}"
        )


def read_prediction_files(
    name: str,
    cfg: PredictionFilesConfig,
    *,
    id_column: str,
    ids: np.ndarray,
    folds: np.ndarray,
    test_ids: np.ndarray | None,
    task: str,
    output_names: list[str],
) -> PredictionFiles:
    """Read and check a prediction-file member against the experiment's rows and plan.

    >>> files = read_prediction_files("lgbm", cfg, id_column="id", ids=data.ids,
    ...     folds=plan.folds, test_ids=data.test_ids, task="multiclass",
    ...     output_names=["ant", "bee", "cat"])
    """
    columns = file_columns(task, output_names)
    what = f"base model {name!r}: OOF file {str(cfg.oof)!r}"
    frame = read_table(cfg.oof, what=f"base model {name!r}")
    rows = _align(frame, ids, what=what, id_column=id_column)
    _check_folds(name, cfg.oof, frame, rows, np.asarray(ids), np.asarray(folds))
    oof = _values(frame, rows, ids, what=what, task=task, columns=columns)
    digests = {"oof": path_digest(cfg.oof)}
    test = None
    if test_ids is not None:
        if cfg.test is None:
            raise BaseModelError(
                f"base model {name!r}: the data has test rows but `predictions` names no "
                "`test` file; add `test: FILE` with the model's predictions of data.test"
            )
        what = f"base model {name!r}: test file {str(cfg.test)!r}"
        frame = read_table(cfg.test, what=f"base model {name!r}")
        rows = _align(frame, test_ids, what=what, id_column=id_column)
        test = _values(frame, rows, test_ids, what=what, task=task, columns=columns)
        digests["test"] = path_digest(cfg.test)
    return PredictionFiles(name=name, oof=oof, test=test, digests=digests)


def digest_tag(name: str, role: str) -> str:
    """The MLflow tag holding the sha256 of member ``name``'s ``role`` (oof, test) file."""
    return f"stacking.predictions.{name}.{role}_digest"


def check_recorded_files(
    run_id: str, name: str, cfg: PredictionFilesConfig, tags: dict[str, str]
) -> None:
    """Refuse to reproduce run ``run_id`` when a prediction file changed since it was
    recorded, as a changed fold-model file is refused: the same config would stack other
    numbers."""
    for role, path in (("oof", cfg.oof), ("test", cfg.test)):
        recorded = tags.get(digest_tag(name, role))
        if path is None or recorded is None:
            continue
        if not path.is_file():
            raise DataFileNotFoundError(
                f"run {run_id}: base model {name!r}'s {role} file {str(path)!r} no longer "
                "exists; restore it to reproduce the run"
            )
        now = path_digest(path)
        if now != recorded:
            raise DataError(
                f"run {run_id}: base model {name!r}'s {role} file {str(path)!r} has sha256 "
                f"{now[:16]}… but the run recorded {recorded[:16]}…; the file changed since "
                "that run. Restore it, or start a new run with `stacking run`"
            )
