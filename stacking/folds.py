"""The fold plan: which fold each row belongs to, and a digest that identifies it.

Every level of a stack uses one fold plan. Fold models must have been trained with the
same plan (their manifest records its digest), otherwise a row could be predicted by a
model that saw it. The digest depends only on the id → fold mapping, not on row order.

>>> plan = FoldPlan(ids=np.array([10, 11, 12, 13]), folds=np.array([0, 1, 0, 1]))
>>> plan.n_splits, plan.train_index(0).tolist()
(2, [1, 3])

A plan may reserve rows (fold ``-1``, :data:`RESERVED`; ``folds.holdout``) that no fold
model trains on: they are in no fold's training or held-out rows, every fold model predicts
them like test rows, and ``meta.guard`` scores the stack on them. A plan without reserved
rows has the same folds, file and digest as before reserved rows existed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from stacking.config import FoldsConfig
from stacking.data import Dataset
from stacking.errors import ConfigError, DataError

RESERVED = -1  # the fold of a row that no fold model trains on (folds.holdout)


@dataclass(frozen=True)
class FoldPlan:
    """``folds[i]`` is the fold of row ``ids[i]``; folds are ``0..n_splits-1``, and
    :data:`RESERVED` (-1) for a row that no fold model trains on."""

    ids: np.ndarray
    folds: np.ndarray

    def __post_init__(self) -> None:
        present = np.unique(self.folds[self.folds != RESERVED])
        if present.size < 2 or not np.array_equal(present, np.arange(present.size)):
            raise DataError(
                f"a fold plan needs folds numbered 0..K-1 with K >= 2. Received folds "
                f"{np.unique(self.folds).tolist()[:20]} (-1 marks a reserved row)"
            )

    @property
    def reserved(self) -> np.ndarray:
        """A boolean mask of the reserved rows (fold -1): no fold model trains on them."""
        return np.asarray(self.folds) == RESERVED

    @property
    def n_reserved(self) -> int:
        return int(self.reserved.sum())

    def kept(self) -> FoldPlan:
        """The plan of the rows that are not reserved (the rows the meta level fits on)."""
        keep = ~self.reserved
        return FoldPlan(ids=np.asarray(self.ids)[keep], folds=np.asarray(self.folds)[keep])

    @property
    def n_splits(self) -> int:
        return int(self.folds.max()) + 1

    @cached_property
    def digest(self) -> str:
        """sha256 over the id → fold pairs sorted by id; independent of row order.

        The hashed text is the lines ``f"{id},{fold}"`` joined by newlines, sorted by the
        id's ``str`` (code-point order, ties kept in row order). Manifests record this
        value, so it must never change for a given plan. Built with array operations (ids
        as UTF-8 bytes sort in code-point order) and computed once per plan: ``ids`` and
        ``folds`` must not be modified in place after the first call.
        """
        keys = _utf8(np.asarray(self.ids))
        order = np.argsort(keys, kind="stable")
        folds = np.asarray(self.folds)[order]
        texts = [str(k).encode() for k in range(int(folds.max()) + 1)]
        if (folds == RESERVED).any():  # index -1 picks the last text: "-1"
            texts.append(str(RESERVED).encode())
        fold_text = np.array(texts)
        n = len(keys)
        columns = [keys[order], np.full(n, b","), fold_text[folds], np.full(n, b"\n")]
        table = np.hstack([c.view(np.uint8).reshape(n, c.dtype.itemsize) for c in columns])
        used = np.hstack(
            [np.arange(c.dtype.itemsize) < np.char.str_len(c)[:, None] for c in columns]
        )
        text = table[used].tobytes()[:-1]  # each cell's bytes, no newline after the last line
        return hashlib.sha256(text).hexdigest()[:16]

    def train_index(self, k: int) -> np.ndarray:
        """The rows fold model ``k`` trains on: every other fold, never a reserved row."""
        return np.flatnonzero((self.folds != k) & (self.folds != RESERVED))

    def test_index(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.folds == k)

    def split(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_index, test_index)`` like a scikit-learn splitter."""
        for k in range(self.n_splits):
            yield self.train_index(k), self.test_index(k)

    def to_frame(self, id_column: str = "id") -> pd.DataFrame:
        return pd.DataFrame({id_column: self.ids, "fold": self.folds})

    def save(self, path: Path, id_column: str = "id") -> None:
        self.to_frame(id_column).to_csv(path, index=False)

    @classmethod
    def from_csv(cls, path: Path) -> FoldPlan:
        # Ids as written (strings): "001" must stay "001" for the digest to match.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return cls(ids=frame.iloc[:, 0].to_numpy(), folds=frame["fold"].to_numpy(dtype=int))


def _utf8(values: np.ndarray) -> np.ndarray:
    """``str(v).encode()`` of every value as a bytes array (integers without Python calls)."""
    if values.dtype.kind in "iu":
        return values.astype("S")
    text = values if values.dtype.kind == "U" else values.astype(str)
    return np.char.encode(text, "utf-8")


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of re-split ``repeat`` (1, 2, …) derived from the fold seed."""
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


def check_resplit(cfg: FoldsConfig) -> None:
    """Refuse re-splits of a plan read from a column (the experiment calls this early)."""
    if cfg.column is not None:
        raise ConfigError(
            f"meta.repeats needs a splitter to re-split the rows, but the folds come from "
            f"the column {cfg.column!r}; set folds.kind (and folds.group for grouped rows) "
            "instead of folds.column, or set meta.repeats: 1"
        )


def resplit_fold_plan(cfg: FoldsConfig, data: Dataset, repeat: int) -> FoldPlan:
    """Re-split ``repeat`` of the rows: the configured splitter, shuffled with a seed
    derived from ``folds.seed``, so strata and groups are kept as in the fold plan.

    Only the meta level uses these plans (the base models' OOF predictions stay those of
    the fold plan). A plan read from ``folds.column`` has no splitter to re-run.
    """
    check_resplit(cfg)
    # ``data`` holds the rows the meta level fits on: reserved rows are already set aside.
    update = {"shuffle": True, "seed": repeat_seed(cfg.seed, repeat), "holdout": None}
    changed = cfg.model_copy(update=update)
    return make_fold_plan(changed, data, _shuffle_groups=True)


def make_fold_plan(cfg: FoldsConfig, data: Dataset, *, _shuffle_groups: bool = False) -> FoldPlan:
    """Build the plan from a fold column of the data or from a scikit-learn splitter."""
    source = data.source.get("train", "the training data")
    if cfg.file is not None:
        return read_fold_file(cfg.file, data)
    if cfg.column is not None:
        if cfg.column not in data.train.columns:
            raise DataError(f"folds.column {cfg.column!r} is not a column of {source}")
        raw = data.train[cfg.column]
        if raw.isna().any():
            raise DataError(f"fold column {cfg.column!r} in {source} has missing values")
        if not pd.api.types.is_integer_dtype(raw):
            raise DataError(
                f"fold column {cfg.column!r} in {source} must hold integers 0..K-1. "
                f"Received dtype {raw.dtype}"
            )
        folds = raw.to_numpy(dtype=int)
        present = np.unique(folds[folds != RESERVED])
        if present.size < 2 or not np.array_equal(present, np.arange(present.size)):
            raise DataError(
                f"folds.column {cfg.column!r} in {source}: a fold plan needs folds numbered "
                f"0..K-1 with K >= 2. Received folds {np.unique(folds).tolist()[:20]}; "
                "renumber them (-1 marks a reserved row)"
            )
        return FoldPlan(ids=data.ids, folds=folds)
    n = len(data.ids)
    if cfg.n_splits > n:
        raise DataError(f"folds.n_splits={cfg.n_splits} exceeds the {n} rows of {source}")
    seed = cfg.seed if cfg.shuffle else None
    groups = None
    kind = cfg.kind
    if kind == "auto":
        kind = "kfold" if data.task == "regression" else "stratified"
    if kind == "kfold":
        splitter = KFold(cfg.n_splits, shuffle=cfg.shuffle, random_state=seed)
        y_split = None
    elif kind == "stratified":
        if data.task == "regression":
            raise DataError("folds.kind: stratified needs a class target; use kind: kfold")
        splitter = StratifiedKFold(cfg.n_splits, shuffle=cfg.shuffle, random_state=seed)
        # Multilabel: stratify on the label combination, the usual approximation.
        y_split = data.y if data.y.ndim == 1 else [str(r) for r in data.y.tolist()]
    else:
        if cfg.group not in data.train.columns:
            raise DataError(f"folds.group {cfg.group!r} is not a column of {source}")
        # The fold plan's groups are not shuffled (its digest must not change); re-splits are.
        shuffled = {"shuffle": True, "random_state": seed} if _shuffle_groups else {}
        splitter = GroupKFold(cfg.n_splits, **shuffled)
        groups, y_split = data.train[cfg.group].to_numpy(), None
    folds = np.full(n, RESERVED, dtype=int)
    rows = np.arange(n)
    if cfg.holdout is not None:
        rows = np.flatnonzero(~reserve_rows(cfg, data, groups=groups))
    y_rows = None if y_split is None else np.asarray(y_split)[rows]
    g_rows = None if groups is None else groups[rows]
    try:
        for k, (_, test_idx) in enumerate(splitter.split(np.zeros(rows.size), y_rows, g_rows)):
            folds[rows[test_idx]] = k
    except ValueError as exc:
        raise DataError(f"cannot build {kind} folds on {source}: {exc}") from exc
    return FoldPlan(ids=data.ids, folds=folds)


def reserve_rows(cfg: FoldsConfig, data: Dataset, *, groups: np.ndarray | None) -> np.ndarray:
    """The ``folds.holdout`` rows as a boolean mask, drawn with ``folds.seed``: whole groups
    when the plan is grouped, stratified by class for a class target, random otherwise.

    Every class must keep at least one reserved row and ``n_splits`` rows for the folds,
    else the guard could not score the class (or the folds could not be built).
    """
    assert cfg.holdout is not None
    source = data.source.get("train", "the training data")
    n = len(data.ids)
    what = f"folds.holdout: {cfg.holdout}"
    if groups is not None:
        splitter: ShuffleSplit | GroupShuffleSplit | StratifiedShuffleSplit = GroupShuffleSplit(
            1, test_size=cfg.holdout, random_state=cfg.seed
        )
        n_groups = np.unique(groups).size
        if round(cfg.holdout * n_groups) < 1 or n_groups - round(cfg.holdout * n_groups) < 2:
            raise DataError(
                f"{what} of the {n_groups} groups of {source} reserves no whole group or "
                f"leaves fewer than 2 for the folds; raise or lower folds.holdout"
            )
    elif data.task in ("binary", "multiclass"):
        splitter = StratifiedShuffleSplit(1, test_size=cfg.holdout, random_state=cfg.seed)
        labels, counts = np.unique(data.y, return_counts=True)
        for label, count in zip(labels, counts):
            held = int(np.floor(cfg.holdout * count))
            if held < 1 or count - held < cfg.n_splits:
                name = data.classes[int(label)]
                raise DataError(
                    f"{what} reserves {held} of the {count} rows of class {name!r} in {source} "
                    f"(each class needs >= 1 reserved and >= folds.n_splits={cfg.n_splits} "
                    "kept); raise folds.holdout or use more rows"
                )
    else:
        splitter = ShuffleSplit(1, test_size=cfg.holdout, random_state=cfg.seed)
        if round(cfg.holdout * n) < 1:
            raise DataError(f"{what} of the {n} rows of {source} reserves no row; raise it")
    _, held_idx = next(splitter.split(np.zeros(n), data.y if groups is None else None, groups))
    mask = np.zeros(n, dtype=bool)
    mask[held_idx] = True
    return mask


def read_fold_file(path: Path, data: Dataset) -> FoldPlan:
    """The plan of a ``(id, fold)`` CSV such as ``stacking folds`` writes (``folds: {file}``),
    matched to the training rows by id: every id exactly once, no other id."""
    what = f"folds.file {str(path)!r}"
    if not path.is_file():
        raise DataError(f"{what} does not exist; write it with `stacking folds CONFIG --output`")
    frame = pd.read_csv(path)  # ids parsed as the data's are, then compared as text
    missing = [c for c in (data.id_column, "fold") if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} has no column(s) {missing} (columns: {list(frame.columns)[:8]}); it "
            f"needs the id column {data.id_column!r} and `fold`"
        )
    ids = pd.Index(frame[data.id_column].astype(str))
    if ids.has_duplicates:
        raise DataError(f"{what} repeats id(s) {ids[ids.duplicated()].unique()[:3].tolist()}")
    want = np.asarray(data.ids).astype(str)
    where = ids.get_indexer(pd.Index(want))
    if (where < 0).any() or len(ids) != len(want):
        lacking = want[where < 0][:3].tolist()
        extra = ids.difference(pd.Index(want))[:3].tolist()
        raise DataError(
            f"{what} does not hold exactly the training rows (lacking e.g. {lacking}, "
            f"not in the data e.g. {extra}); export it again from this data"
        )
    folds = frame["fold"]
    if folds.isna().any() or not pd.api.types.is_integer_dtype(folds):
        raise DataError(
            f"{what}: `fold` must hold integers 0..K-1 (-1: reserved). Received dtype {folds.dtype}"
        )
    return FoldPlan(ids=data.ids, folds=folds.to_numpy(dtype=int)[where])
