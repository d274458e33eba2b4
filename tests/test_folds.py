"""Fold plans: coverage, stratification, groups, fold columns, the digest and folds.csv."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

from stacking.config import DataConfig, FoldsConfig
from stacking.data import load_dataset
from stacking.errors import DataError
from stacking.folds import FoldPlan, make_fold_plan


def _dataset(tmp_path, n=60, *, target="label", **columns):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "sample": [f"s{i:03d}" for i in range(n)],
            "x": rng.normal(size=n),
            # imbalanced: 2/3 class 0, 1/6 class 1, 1/6 class 2
            "label": np.repeat([0, 0, 0, 0, 1, 2], n // 6),
            "value": rng.normal(size=n),
            "patient": np.arange(n) // 4,
            **columns,
        }
    )
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return load_dataset(DataConfig(train=path, target=target, id="sample"))


@pytest.mark.parametrize("n_splits", [2, 3, 5])
@pytest.mark.parametrize(
    ("kind", "extra"),
    [("kfold", {}), ("stratified", {}), ("group", {"group": "patient"})],
)
def test_fold_plan_covers_every_row_once(tmp_path, kind, extra, n_splits):
    data = _dataset(tmp_path)
    plan = make_fold_plan(FoldsConfig(kind=kind, n_splits=n_splits, **extra), data)
    assert plan.n_splits == n_splits
    assert_array_equal(plan.ids, data.ids)
    tested = np.concatenate([plan.test_index(k) for k in range(n_splits)])
    assert_array_equal(np.sort(tested), np.arange(len(data.ids)))
    sizes = np.bincount(plan.folds)
    assert sizes.max() - sizes.min() <= 4  # roughly equal folds (groups of 4 rows)


def test_stratified_plan_keeps_class_balance(tmp_path):
    data = _dataset(tmp_path)
    plan = make_fold_plan(FoldsConfig(kind="stratified", n_splits=5), data)
    overall = np.bincount(data.y) / len(data.y)
    for k in range(5):
        counts = np.bincount(data.y[plan.test_index(k)], minlength=3)
        assert_array_equal(counts, [8, 2, 2])
        assert np.allclose(counts / counts.sum(), overall)


@pytest.mark.parametrize("n_splits", [2, 3, 4])
def test_group_plan_never_splits_a_group(tmp_path, n_splits):
    data = _dataset(tmp_path)
    plan = make_fold_plan(FoldsConfig(kind="group", n_splits=n_splits, group="patient"), data)
    folds_per_group = pd.Series(plan.folds).groupby(data.train["patient"].to_numpy()).nunique()
    assert (folds_per_group == 1).all()


@pytest.mark.parametrize("kind", ["kfold", "stratified"])
def test_fold_plan_is_seeded(tmp_path, kind):
    data = _dataset(tmp_path)
    a = make_fold_plan(FoldsConfig(kind=kind, seed=1), data)
    b = make_fold_plan(FoldsConfig(kind=kind, seed=1), data)
    c = make_fold_plan(FoldsConfig(kind=kind, seed=2), data)
    assert a.digest == b.digest
    assert a.digest != c.digest


def test_kfold_without_shuffle_is_contiguous(tmp_path):
    data = _dataset(tmp_path, n=12)
    plan = make_fold_plan(FoldsConfig(kind="kfold", n_splits=3, shuffle=False), data)
    assert_array_equal(plan.folds, np.repeat([0, 1, 2], 4))


def test_fold_plan_from_data_column(tmp_path):
    folds = np.arange(60) % 3
    data = _dataset(tmp_path, fold=folds[::-1])
    plan = make_fold_plan(FoldsConfig(column="fold", n_splits=5, kind="kfold"), data)
    assert plan.n_splits == 3  # from the column, not from n_splits
    assert_array_equal(plan.folds, folds[::-1])


@pytest.mark.parametrize(
    ("column", "cfg", "match"),
    [
        (
            np.arange(60) % 3 + 1,
            {},
            r"folds numbered 0\.\.K-1 with K >= 2\. Received folds \[1, 2, 3\]",
        ),
        (np.where(np.arange(60) % 2, 0, 2), {}, r"Received folds \[0, 2\]"),
        (np.where(np.arange(60) % 2, 0, -1), {}, r"Received folds \[-1, 0\]"),
        (np.zeros(60, dtype=int), {}, r"K >= 2\. Received folds \[0\]"),
        (np.arange(60) % 2 + 0.5, {}, r"must hold integers 0\.\.K-1\. Received dtype float64"),
        (
            np.where(np.arange(60) % 2, "a", "b"),
            {},
            r"fold column 'fold' in .*train\.csv must hold integers",
        ),
        (np.arange(60) % 2, {"column": "fld"}, r"folds\.column 'fld' is not a column of"),
    ],
)
def test_fold_plan_bad_fold_column(tmp_path, column, cfg, match):
    data = _dataset(tmp_path, fold=column)
    with pytest.raises(DataError, match=match):
        make_fold_plan(FoldsConfig(**{"column": "fold", **cfg}), data)


def test_fold_column_with_missing_value(tmp_path):
    column = (np.arange(60) % 2).astype(float)
    column[3] = np.nan
    data = _dataset(tmp_path, fold=column)
    with pytest.raises(DataError, match=r"fold column .fold. in .* has missing values"):
        make_fold_plan(FoldsConfig(column="fold"), data)


@pytest.mark.parametrize(
    ("cfg", "target", "match"),
    [
        (FoldsConfig(n_splits=61, kind="kfold"), "label", r"n_splits=61 exceeds the 60 rows of"),
        (
            FoldsConfig(kind="stratified"),
            "value",
            r"stratified needs a class target; use kind: kfold",
        ),
        (FoldsConfig(kind="group", group="ward"), "label", r"folds\.group 'ward' is not a column"),
        (
            FoldsConfig(kind="group", group="patient", n_splits=16),
            "label",
            r"cannot build group folds on .*train\.csv",
        ),
    ],
)
def test_make_fold_plan_errors(tmp_path, cfg, target, match):
    data = _dataset(tmp_path, target=target)
    with pytest.raises(DataError, match=match):
        make_fold_plan(cfg, data)


def test_fold_plan_digest_independent_of_row_order():
    ids = np.array([10, 11, 12, 13, 14, 15])
    folds = np.array([0, 1, 2, 0, 1, 2])
    order = np.array([3, 5, 0, 4, 1, 2])
    assert FoldPlan(ids, folds).digest == FoldPlan(ids[order], folds[order]).digest


def test_fold_plan_digest_changes_when_one_row_moves():
    ids = np.array(["a", "b", "c", "d", "e", "f"])
    folds = np.array([0, 1, 2, 0, 1, 2])
    moved = folds.copy()
    moved[4] = 0
    assert FoldPlan(ids, folds).digest != FoldPlan(ids, moved).digest


def test_fold_plan_digest_changes_with_ids():
    folds = np.array([0, 1, 0, 1])
    assert FoldPlan(np.arange(4), folds).digest != FoldPlan(np.arange(1, 5), folds).digest


@pytest.mark.parametrize("k", [0, 1, 2])
def test_fold_plan_train_and_test_index_are_complementary(k):
    plan = FoldPlan(ids=np.arange(10, 19), folds=np.array([2, 0, 1, 1, 0, 2, 2, 0, 1]))
    train, test = plan.train_index(k), plan.test_index(k)
    assert np.intersect1d(train, test).size == 0
    assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(9))
    assert (plan.folds[test] == k).all() and (plan.folds[train] != k).all()


def test_fold_plan_split_like_scikit_learn():
    plan = FoldPlan(ids=np.array([10, 11, 12, 13]), folds=np.array([0, 1, 0, 1]))
    splits = [(tr.tolist(), te.tolist()) for tr, te in plan.split()]
    assert splits == [([1, 3], [0, 2]), ([0, 2], [1, 3])]


@pytest.mark.parametrize(
    "ids",
    [np.array([7, 3, 11, 5, 2, 9]), np.array(["a", "b", "x", "d", "q", "z"], dtype=object)],
)
def test_fold_plan_csv_round_trip_keeps_digest(tmp_path, ids):
    plan = FoldPlan(ids=ids, folds=np.array([1, 0, 2, 2, 0, 1]))
    path = tmp_path / "folds.csv"
    plan.save(path, id_column="sample")
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["sample", "fold"]
    again = FoldPlan.from_csv(path)
    assert again.digest == plan.digest
    assert_array_equal(again.folds, plan.folds)
    assert again.n_splits == 3


def test_fold_plan_csv_round_trip_keeps_digest_of_numeric_looking_string_ids(tmp_path):
    plan = FoldPlan(ids=np.array(["001", "002", "010"], dtype=object), folds=np.array([0, 1, 0]))
    plan.save(tmp_path / "folds.csv")
    assert FoldPlan.from_csv(tmp_path / "folds.csv").digest == plan.digest


@pytest.mark.parametrize(("target", "expected"), [("label", "stratified"), ("value", "kfold")])
def test_fold_plan_auto_kind_follows_the_task(tmp_path, target, expected):
    data = _dataset(tmp_path, target=target)
    auto = make_fold_plan(FoldsConfig(n_splits=3), data)
    explicit = make_fold_plan(FoldsConfig(n_splits=3, kind=expected), data)
    assert auto.digest == explicit.digest


def _loop_digest(ids, folds):
    """The digest as first written, one Python string per row: the vectorised one must match."""
    keys = np.array([str(i) for i in ids])
    order = np.argsort(keys, kind="stable")
    lines = "\n".join(f"{k},{f}" for k, f in zip(keys[order], folds[order]))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def _random_plan(n=1000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n)
    folds = rng.integers(0, k, n)
    folds[:k] = np.arange(k)
    return ids, folds


# Digests recorded by manifests on disk, computed by the code before it was vectorised.
PINNED_DIGESTS = [
    (np.array([10, 11, 12, 13, 14, 15, 2, 100]), [0, 1, 2, 0, 1, 2, 0, 1], "68bd3d14b56fc9e8"),
    (np.array(["s001", "s002", "b", "a", "010", "9"]), [1, 0, 1, 0, 1, 0], "a3959d9efb5867dc"),
    (
        np.array(["s001", "s002", "b", "a", "010", "9"], dtype=object),
        [1, 0, 1, 0, 1, 0],
        "a3959d9efb5867dc",
    ),
    (np.array([-3, 0, 7, 1.5]), [0, 1, 0, 1], "45461fb19b0335e2"),
    (np.array(["é", "z", "A", "ä"]), [0, 1, 0, 1], "074c85f374623357"),
    (*_random_plan(), "8f7d77a169e18bb8"),
]


@pytest.mark.parametrize(("ids", "folds", "digest"), PINNED_DIGESTS)
def test_fold_plan_digest_is_pinned(ids, folds, digest):
    assert FoldPlan(ids, np.asarray(folds)).digest == digest


@pytest.mark.parametrize(
    "ids",
    [
        np.array([3, "x", 2.5, None], dtype=object),
        np.array([5, 5, 3, 3]),  # duplicate ids keep row order among themselves
        np.array([1e20, 1e-7, np.nan, -0.0]),
        np.array([-12, -3, 0, 120]),
        np.array(["日本", "a b", "", "Z"]),
        np.arange(4).astype(np.uint8),
    ],
)
def test_fold_plan_digest_equals_the_row_loop(ids):
    folds = np.array([0, 1, 1, 0])
    assert FoldPlan(ids, folds).digest == _loop_digest(ids, folds)


def test_fold_plan_digest_with_ten_or_more_folds_equals_the_row_loop():
    ids, folds = _random_plan(n=300, k=12, seed=3)
    assert FoldPlan(ids, folds).digest == _loop_digest(ids, folds)


def test_fold_plan_digest_is_computed_once():
    plan = FoldPlan(*_random_plan())
    first = plan.digest
    assert plan.__dict__["digest"] == first  # cached on the instance, not recomputed
    assert plan.digest is first
