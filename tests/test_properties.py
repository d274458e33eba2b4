"""Property tests (hypothesis): fold plans, level-1 column names, config round-trips, cache keys.

Each property is one a user relies on without checking it: a row is predicted by exactly
one fold model, stratification and groups hold, the fold-plan digest does not depend on
row order, level-1 columns never collide, a config read back from ``to_dict`` is the same
config, and a cache key changes with every input and with nothing else.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stacking.cache import make_key
from stacking.config import FoldsConfig, parse_config
from stacking.data import Dataset
from stacking.folds import FoldPlan, make_fold_plan
from stacking.level1 import output_columns
from stacking.metrics import available_metrics

FAST = settings(max_examples=40, deadline=None)


# --- fold plans ------------------------------------------------------------------------


def _dataset(y: np.ndarray, groups: np.ndarray | None = None) -> Dataset:
    n = len(y)
    frame = pd.DataFrame({"x": np.zeros(n), "group": np.arange(n) if groups is None else groups})
    return Dataset(
        train=frame,
        ids=np.arange(1000, 1000 + n),
        y=y,
        task="multiclass",
        classes=sorted(set(y.tolist())),
        id_column="id",
        target="label",
        digest="-",
    )


@st.composite
def class_targets(draw):
    """Class targets with at least ``n_splits`` rows per class (scikit-learn warns below)."""
    n_splits = draw(st.integers(2, 6))
    counts = draw(st.lists(st.integers(n_splits, 40), min_size=2, max_size=5))
    y = np.repeat(np.arange(len(counts)), counts)
    order = draw(st.permutations(range(len(y))))
    return y[np.array(order)], n_splits


@FAST
@given(class_targets(), st.sampled_from(["kfold", "stratified"]), st.integers(0, 2**31 - 1))
def test_fold_plan_puts_every_row_in_exactly_one_fold(target, kind, seed):
    y, n_splits = target
    plan = make_fold_plan(FoldsConfig(kind=kind, n_splits=n_splits, seed=seed), _dataset(y))
    tested = np.concatenate([plan.test_index(k) for k in range(plan.n_splits)])
    assert plan.n_splits == n_splits
    assert np.array_equal(np.sort(tested), np.arange(len(y)))  # each row once, none twice
    for k in range(n_splits):
        assert len(plan.train_index(k)) + len(plan.test_index(k)) == len(y)


@FAST
@given(class_targets(), st.integers(0, 2**31 - 1))
def test_stratified_fold_plan_keeps_class_proportions_within_one_row(target, seed):
    y, n_splits = target
    plan = make_fold_plan(FoldsConfig(kind="stratified", n_splits=n_splits, seed=seed), _dataset(y))
    for c in np.unique(y):
        per_fold = np.bincount(plan.folds[y == c], minlength=n_splits)
        assert np.all(np.abs(per_fold - (y == c).sum() / n_splits) < 1)


@FAST
@given(
    st.lists(st.integers(0, 30), min_size=6, max_size=120),
    st.integers(2, 5),
)
def test_group_fold_plan_never_splits_a_group(groups, n_splits):
    groups = np.array(groups)
    assume(len(np.unique(groups)) >= n_splits)
    y = np.arange(len(groups)) % 2
    cfg = FoldsConfig(kind="group", n_splits=n_splits, group="group")
    plan = make_fold_plan(cfg, _dataset(y, groups))
    for g in np.unique(groups):
        assert len(np.unique(plan.folds[groups == g])) == 1


def _loop_digest(ids, folds) -> str:
    """The digest as first written, one Python string per row."""
    keys = np.array([str(i) for i in ids])
    order = np.argsort(keys, kind="stable")
    lines = "\n".join(f"{k},{f}" for k, f in zip(keys[order], folds[order]))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
id_lists = st.one_of(
    st.lists(st.integers(-(2**62), 2**62), min_size=2, max_size=60, unique=True),
    st.lists(texts, min_size=2, max_size=60, unique=True),
)


@st.composite
def fold_plans(draw):
    ids = draw(id_lists)
    n_splits = draw(st.integers(2, min(len(ids), 12)))
    folds = np.array(
        draw(
            st.lists(
                st.integers(0, n_splits - 1),
                min_size=len(ids) - n_splits,
                max_size=len(ids) - n_splits,
            )
        )
        + list(range(n_splits))
    )
    as_object = draw(st.booleans())
    return np.array(ids, dtype=object if as_object else None), folds


@FAST
@given(fold_plans(), st.randoms(use_true_random=False))
def test_fold_plan_digest_is_stable_under_row_reordering(plan_arrays, random):
    ids, folds = plan_arrays
    order = np.array(random.sample(range(len(ids)), len(ids)))
    digest = FoldPlan(ids, folds).digest
    assert FoldPlan(ids[order], folds[order]).digest == digest
    assert digest == _loop_digest(ids, folds)  # the value manifests on disk recorded


@FAST
@given(fold_plans(), st.data())
def test_fold_plan_digest_changes_when_a_row_changes_fold(plan_arrays, data):
    ids, folds = plan_arrays
    row = data.draw(st.integers(0, len(ids) - 1))
    moved = folds.copy()
    moved[row] = (folds[row] + 1) % (folds.max() + 1)
    assume(len(np.unique(moved)) == folds.max() + 1)  # still a valid plan
    assert FoldPlan(ids, moved).digest != FoldPlan(ids, folds).digest


# --- level-1 column names --------------------------------------------------------------

# Config's rule (letter first, no "__"), and no trailing "_": see the collision test below.
model_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,8}", fullmatch=True).filter(
    lambda s: "__" not in s and not s.endswith("_")
)


@FAST
@given(
    st.lists(model_names, min_size=1, max_size=4, unique=True),
    st.lists(st.text(max_size=6), min_size=2, max_size=5, unique=True),
    st.sampled_from(["binary", "multiclass", "multilabel", "regression"]),
    st.booleans(),
)
def test_level1_column_names_are_unique_and_name_model_and_output(
    models, outputs, task, drop_redundant
):
    outputs = ["pred"] if task == "regression" else outputs
    kept = outputs[1:] if task == "binary" and drop_redundant else outputs
    columns = []
    for m in models:
        names = output_columns(m, task, outputs, drop_redundant=drop_redundant)
        assert names == [f"{m}__{o}" for o in kept]
        columns += names
    assert len(set(columns)) == len(columns)


@pytest.mark.xfail(
    strict=True,
    reason="known defect: config accepts model names ending in '_', so models 'a' and 'a_' "
    "with classes 'x' and '_x' both get a column 'a___x'; forbid a trailing '_' in "
    "config._NAME (then remove this mark and the filter on model_names)",
)
def test_level1_column_names_collide_for_a_model_name_ending_in_underscore():
    columns = [c for m in ["a", "a_"] for c in output_columns(m, "multiclass", ["x", "_x"])]
    assert len(set(columns)) == len(columns)


# --- config round-trips ----------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def raw_configs(draw):
    views = draw(st.dictionaries(names, st.builds(lambda c: {"columns": c}, names), max_size=2))
    view_names = sorted(views) or [None]

    def model():
        view = draw(st.sampled_from(view_names))
        entry = {"path": f"models/{draw(names)}", "input": view or {"columns": "px_*"}}
        if draw(st.booleans()):
            entry["trained_on"] = draw(st.sampled_from(["folds", "external"]))
        if draw(st.booleans()):
            entry["outputs_are"] = draw(st.sampled_from(["auto", "proba", "logits"]))
        return entry

    kind = draw(st.sampled_from(["auto", "kfold", "stratified", "group"]))
    folds = {"kind": kind, "n_splits": draw(st.integers(2, 10)), "seed": draw(st.integers(0, 99))}
    if kind == "group":
        folds["group"] = draw(names)
    models = draw(
        st.lists(names.filter(lambda s: "__" not in s), min_size=1, max_size=3, unique=True)
    )
    return {
        "name": draw(names),
        "data": {
            "train": "data/train.csv",
            "test": draw(st.sampled_from([None, "data/test.csv"])),
            "target": draw(st.one_of(names, st.lists(names, min_size=1, max_size=3))),
            "task": draw(st.sampled_from(["auto", "binary", "multiclass", "regression"])),
            "views": views,
        },
        "folds": folds,
        "base_models": {m: model() for m in models},
        "meta": {
            "features": draw(st.sampled_from(["proba", "logit", "rank"])),
            "candidates": draw(
                st.lists(st.sampled_from(["default", "mean", "logistic"]), min_size=1, max_size=3)
            ),
            "bootstrap": draw(st.integers(0, 2000)),
        },
        "metrics": draw(st.lists(st.sampled_from(available_metrics()), max_size=3)),
        "cache": {"enabled": draw(st.booleans())},
        "executor": {"batch_size": draw(st.integers(1, 10_000))},
    }


@FAST
@given(raw_configs())
def test_config_round_trips_through_to_dict(raw):
    root = Path("/project")
    cfg = parse_config(copy.deepcopy(raw), root=root)
    again = parse_config(json.loads(json.dumps(cfg.to_dict())), root=root)
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


# --- cache keys ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
key_parts = st.dictionaries(names, json_values, min_size=1, max_size=4)


def _reversed(value):
    """The same value with every dict's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


@FAST
@given(key_parts)
def test_cache_key_is_deterministic_and_ignores_dict_order(parts):
    key = make_key(**parts)
    assert make_key(**copy.deepcopy(parts)) == key
    assert make_key(**_reversed(parts)) == key


@FAST
@given(key_parts, st.data())
def test_cache_key_changes_with_any_input(parts, data):
    name = data.draw(st.sampled_from(sorted(parts)))
    other = data.draw(json_values)
    assume(json.dumps(other, sort_keys=True) != json.dumps(parts[name], sort_keys=True))
    assert make_key(**{**parts, name: other}) != make_key(**parts)
    renamed = data.draw(names.filter(lambda s: s not in parts))
    moved = {renamed if k == name else k: v for k, v in parts.items()}
    assert make_key(**moved) != make_key(**parts)
