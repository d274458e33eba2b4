"""Evaluate: the paired bootstrap against a slow reference, the leaderboard, fold scores."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as skm

from stacking import evaluate
from stacking.evaluate import (
    Entry,
    best_of,
    format_leaderboard,
    leaderboard,
    paired_bootstrap,
    score_entry,
)
from stacking.folds import FoldPlan
from stacking.metrics import get_metric


def _probas(y, n_classes, strength, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n_classes), size=len(y)) + strength * np.eye(n_classes)[y]
    return p / p.sum(axis=1, keepdims=True)


def _problem(task, n=120, seed=0):
    """Targets and two predictions, ``a`` better than ``b``."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(size=n)
        return y, y + rng.normal(0, 0.3, n), y + rng.normal(0, 0.6, n)
    if task == "multilabel":
        y = rng.integers(0, 2, size=(n, 3))
        a = np.clip(0.5 * y + 0.5 * rng.uniform(size=y.shape), 0.01, 0.99)
        b = np.clip(0.3 * y + 0.7 * rng.uniform(size=y.shape), 0.01, 0.99)
        return y, a, b
    c = 2 if task == "binary" else 3
    y = rng.integers(0, c, size=n)
    return y, _probas(y, c, 1.0, seed + 1), _probas(y, c, 0.3, seed + 2)


def _reference_score(name, y, p, w, task):
    """The metric on one resample, straight from scikit-learn."""
    if name == "log_loss":
        if task == "multilabel":  # the mean over labels, row by row
            w = None if w is None else np.repeat(w, y.shape[1])
            return skm.log_loss(y.ravel(), p.ravel(), labels=[0, 1], sample_weight=w)
        return skm.log_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=w)
    if name == "accuracy":
        labels = (p >= 0.5).astype(int) if task == "multilabel" else p.argmax(axis=1)
        return skm.accuracy_score(y, labels, sample_weight=w)
    if name == "rmse":
        return np.sqrt(skm.mean_squared_error(y, p, sample_weight=w))
    if name == "mae":
        return skm.mean_absolute_error(y, p, sample_weight=w)
    if name == "brier_score":
        if task == "binary":
            return skm.brier_score_loss(y, p[:, 1], sample_weight=w)
        return skm.brier_score_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=w)
    if name == "roc_auc":
        if task == "binary":
            return skm.roc_auc_score(y, p[:, 1], sample_weight=w)
        if task == "multilabel":
            return skm.roc_auc_score(y, p, average="macro", sample_weight=w)
        labels = np.arange(p.shape[1])
        return skm.roc_auc_score(y, p, multi_class="ovr", labels=labels, sample_weight=w)
    if name == "f1_macro":
        return skm.f1_score(y, p.argmax(axis=1), average="macro", sample_weight=w)
    if name == "r2":
        return skm.r2_score(y, p, sample_weight=w)
    raise AssertionError(name)


def _reference_bootstrap(name, y, a, b, task, n_resamples, seed, w=None):
    """A slow loop over the same resample indices as ``paired_bootstrap``."""
    n = len(y)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    diffs = []
    for rows in idx:
        wr = None if w is None else w[rows]
        diffs.append(
            _reference_score(name, y[rows], a[rows], wr, task)
            - _reference_score(name, y[rows], b[rows], wr, task)
        )
    delta = _reference_score(name, y, a, w, task) - _reference_score(name, y, b, w, task)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return delta, low, high


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("log_loss", "binary"),
        ("log_loss", "multiclass"),
        ("log_loss", "multilabel"),
        ("accuracy", "binary"),
        ("accuracy", "multiclass"),
        ("accuracy", "multilabel"),
        ("brier_score", "binary"),
        ("brier_score", "multiclass"),
        ("rmse", "regression"),
        ("mae", "regression"),
        ("roc_auc", "binary"),
        ("roc_auc", "multiclass"),
        ("roc_auc", "multilabel"),
        ("f1_macro", "multiclass"),
        ("r2", "regression"),
    ],
)
def test_paired_bootstrap_vectorised_equals_reference_loop(name, task, weighted):
    y, a, b = _problem(task, n=60)
    w = np.random.default_rng(5).uniform(0.2, 2.0, len(y)) if weighted else None
    got = paired_bootstrap(
        get_metric(name), y, a, b, task=task, n_resamples=50, seed=3, sample_weight=w
    )
    expected = _reference_bootstrap(name, y, a, b, task, n_resamples=50, seed=3, w=w)
    assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_paired_bootstrap_loop_metric_uses_the_same_resamples():
    y, a, b = _problem("multiclass", n=80)
    got = paired_bootstrap(
        get_metric("roc_auc"), y, a, b, task="multiclass", n_resamples=30, seed=4
    )
    idx = np.random.default_rng(4).integers(0, len(y), size=(30, len(y)))
    diffs = [
        skm.roc_auc_score(y[r], a[r], multi_class="ovr", labels=[0, 1, 2])
        - skm.roc_auc_score(y[r], b[r], multi_class="ovr", labels=[0, 1, 2])
        for r in idx
    ]
    assert_allclose(got[1:], np.percentile(diffs, [2.5, 97.5]), rtol=1e-12)


@pytest.mark.parametrize(("name", "task"), [("log_loss", "multiclass"), ("roc_auc", "binary")])
def test_paired_bootstrap_is_reproducible_with_a_seed(name, task):
    y, a, b = _problem(task)
    metric = get_metric(name)
    first = paired_bootstrap(metric, y, a, b, task=task, n_resamples=60, seed=7)
    again = paired_bootstrap(metric, y, a, b, task=task, n_resamples=60, seed=7)
    other = paired_bootstrap(metric, y, a, b, task=task, n_resamples=60, seed=8)
    assert first == again
    assert other[0] == first[0]  # the point estimate does not depend on the seed
    assert other[1:] != first[1:]


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("log_loss", "multiclass"),
        ("accuracy", "binary"),
        ("roc_auc", "multiclass"),
        ("rmse", "regression"),
        ("r2", "regression"),
    ],
)
def test_paired_bootstrap_interval_contains_point_estimate(name, task):
    y, a, b = _problem(task, n=300)
    delta, low, high = paired_bootstrap(get_metric(name), y, a, b, task=task, n_resamples=150)
    assert low < delta < high
    metric = get_metric(name)
    # ``a`` is the better model: the whole interval is on its side of 0
    assert (high < 0) if not metric.greater_is_better else (low > 0)


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("log_loss", "binary"),
        ("accuracy", "multiclass"),
        ("roc_auc", "multiclass"),
        ("mae", "regression"),
    ],
)
def test_paired_bootstrap_identical_predictions_give_zero(name, task):
    y, a, _ = _problem(task)
    assert paired_bootstrap(get_metric(name), y, a, a.copy(), task=task, n_resamples=40) == (
        0.0,
        0.0,
        0.0,
    )


def test_paired_bootstrap_zero_resamples_gives_no_interval():
    y, a, b = _problem("binary")
    delta, low, high = paired_bootstrap(
        get_metric("log_loss"), y, a, b, task="binary", n_resamples=0
    )
    assert delta < 0
    assert np.isnan(low) and np.isnan(high)


def _plan(n, k=3):
    return FoldPlan(ids=np.arange(n), folds=np.arange(n) % k)


def _entries(y, task, plan, metrics, specs):
    entries = []
    for name, role, oof in specs:
        entry = Entry(name, role, 1 if role != "meta" else 2, oof)
        score_entry(entry, y, plan, task=task, metrics=metrics)
        entries.append(entry)
    return entries


def test_score_entry_overall_and_per_fold():
    y, a, _ = _problem("multiclass", n=90)
    plan = _plan(90)
    entry = Entry("cnn", "base", 1, a)
    score_entry(entry, y, plan, task="multiclass", metrics=["neg_log_loss", "accuracy"])
    assert set(entry.scores) == set(entry.fold_scores) == {"log_loss", "accuracy"}
    assert_allclose(entry.scores["log_loss"], skm.log_loss(y, a))
    expected = [
        skm.accuracy_score(y[plan.folds == k], a[plan.folds == k].argmax(1)) for k in range(3)
    ]
    assert_allclose(entry.fold_scores["accuracy"], expected)
    assert entry.scores["accuracy"] == pytest.approx(np.mean(expected))  # equal folds


def test_score_entry_per_fold_with_sample_weight():
    y, _, a = _problem("regression", n=60)
    w = np.linspace(0.1, 2.0, 60)
    plan = _plan(60, k=4)
    entry = Entry("mlp", "base", 1, a)
    score_entry(entry, y, plan, task="regression", metrics=["mae"], sample_weight=w)
    expected = [
        skm.mean_absolute_error(
            y[plan.folds == k], a[plan.folds == k], sample_weight=w[plan.folds == k]
        )
        for k in range(4)
    ]
    assert_allclose(entry.fold_scores["mae"], expected)
    assert_allclose(entry.scores["mae"], skm.mean_absolute_error(y, a, sample_weight=w))


def _graded(y, n_classes, n_wrong):
    """Confident predictions, wrong on the first ``n_wrong`` rows: every metric ranks them."""
    predicted = y.copy()
    predicted[:n_wrong] = (y[:n_wrong] + 1) % n_classes
    p = np.full((len(y), n_classes), 0.4 / (n_classes - 1))
    p[np.arange(len(y)), predicted] = 0.6
    return p


@pytest.mark.parametrize(
    ("primary", "ascending"),
    [("log_loss", True), ("neg_log_loss", True), ("accuracy", False), ("brier_score", True)],
)
def test_leaderboard_sorts_by_primary_metric_direction(primary, ascending):
    n = 150
    y = np.random.default_rng(0).integers(0, 3, n)
    specs = [
        ("weak", "base", _graded(y, 3, 60)),
        ("strong", "base", _graded(y, 3, 20)),
        ("stack", "meta", _graded(y, 3, 5)),
        ("mean", "base_mean", _graded(y, 3, 40)),
    ]
    metrics = [primary, "roc_auc"]
    entries = _entries(y, "multiclass", _plan(n), metrics, specs)
    board = leaderboard(
        entries, y, task="multiclass", metrics=metrics, selected="stack", n_resamples=50
    )
    name = get_metric(primary).name
    values = board[f"cv_{name}"].to_numpy()
    assert (np.diff(values) > 0).all() if ascending else (np.diff(values) < 0).all()
    assert list(board["model"]) == ["stack", "strong", "mean", "weak"]
    assert list(board["selected"]) == [True, False, False, False]
    assert f"cv_{name}_std" in board.columns and "cv_roc_auc" in board.columns


def test_leaderboard_compares_non_base_entries_with_the_best_base():
    n = 150
    y = np.random.default_rng(0).integers(0, 2, n)
    weak, strong, stack = _probas(y, 2, 0.2, 1), _probas(y, 2, 2.0, 2), _probas(y, 2, 4.0, 3)
    specs = [("weak", "base", weak), ("strong", "base", strong), ("stack", "meta", stack)]
    entries = _entries(y, "binary", _plan(n), ["log_loss"], specs)
    board = leaderboard(
        entries, y, task="binary", metrics=["log_loss"], selected="stack", n_resamples=80, seed=2
    ).set_index("model")
    expected = paired_bootstrap(
        get_metric("log_loss"), y, stack, strong, task="binary", n_resamples=80, seed=2
    )
    got = tuple(board.loc["stack", ["delta_vs_best_base", "ci_low", "ci_high"]])
    assert_allclose(got, expected)
    assert board.loc["stack", "delta_vs_best_base"] < 0  # a loss: negative is better
    assert board.loc[["weak", "strong"], "delta_vs_best_base"].isna().all()
    assert board.loc["stack", "level"] == 2 and board.loc["weak", "role"] == "base"
    fold_scores = entries[0].fold_scores["log_loss"]
    assert board.loc["weak", "cv_log_loss_std"] == pytest.approx(np.std(fold_scores))


def test_format_leaderboard_shows_direction_and_selection():
    n = 60
    y = np.random.default_rng(0).integers(0, 2, n)
    specs = [("cnn", "base", _probas(y, 2, 0.5, 1)), ("lr", "meta", _probas(y, 2, 2.0, 2))]
    entries = _entries(y, "binary", _plan(n), ["accuracy"], specs)
    board = leaderboard(
        entries, y, task="binary", metrics=["accuracy"], selected="lr", n_resamples=10
    )
    text = format_leaderboard(board, get_metric("accuracy"))
    assert text.splitlines()[0] == "leaderboard (out-of-fold; accuracy: higher is better)"
    lr_line = next(line for line in text.splitlines() if line.lstrip().startswith("lr"))
    assert lr_line.rstrip().endswith("*")


def test_paired_bootstrap_with_tied_scores_equals_reference_loop():
    y, a, b = _problem("binary", n=80)
    a, b = np.round(a, 1), np.round(b, 1)  # rows stay on the simplex: 0.1 steps
    w = np.random.default_rng(6).uniform(0.2, 2.0, len(y))
    got = paired_bootstrap(
        get_metric("roc_auc"), y, a, b, task="binary", n_resamples=40, seed=1, sample_weight=w
    )
    expected = _reference_bootstrap("roc_auc", y, a, b, "binary", n_resamples=40, seed=1, w=w)
    assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "task"), [("log_loss", "multiclass"), ("roc_auc", "binary")])
def test_paired_bootstrap_in_blocks_draws_the_same_resamples(monkeypatch, name, task):
    y, a, b = _problem(task, n=60)
    whole = paired_bootstrap(get_metric(name), y, a, b, task=task, n_resamples=25, seed=2)
    monkeypatch.setattr(evaluate, "_BLOCK", 130)  # two resamples per block, the last alone
    blocks = paired_bootstrap(get_metric(name), y, a, b, task=task, n_resamples=25, seed=2)
    assert blocks == pytest.approx(whole, rel=1e-12)
    expected = _reference_bootstrap(name, y, a, b, task, n_resamples=25, seed=2)
    assert_allclose(blocks, expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("primary", "task"),
    [("log_loss", "multiclass"), ("roc_auc", "multiclass"), ("mae", "regression")],
)
def test_leaderboard_intervals_equal_paired_bootstrap_for_every_entry(primary, task):
    n = 120
    y, strong, weak = _problem(task, n=n, seed=3)
    _, other_a, other_b = _problem(task, n=n, seed=4)
    meta_a, meta_b = (strong + other_a) / 2, (weak + other_b) / 2
    specs = [
        ("strong", "base", strong),
        ("weak", "base", weak),
        ("stack_a", "meta", meta_a),
        ("stack_b", "meta", meta_b),
    ]
    w = np.linspace(0.5, 1.5, n)
    entries = _entries(y, task, _plan(n), [primary], specs)
    board = leaderboard(
        entries,
        y,
        task=task,
        metrics=[primary],
        selected="stack_a",
        n_resamples=30,
        seed=5,
        sample_weight=w,
    ).set_index("model")
    best_oof = best_of(entries[:2], get_metric(primary)).oof
    for name, oof in [("stack_a", meta_a), ("stack_b", meta_b)]:
        expected = paired_bootstrap(
            get_metric(primary),
            y,
            oof,
            best_oof,
            task=task,
            n_resamples=30,
            seed=5,
            sample_weight=w,
        )
        got = tuple(board.loc[name, ["delta_vs_best_base", "ci_low", "ci_high"]])
        assert_allclose(got, expected, rtol=1e-12)
