"""Evaluate: the paired bootstrap against a slow reference, the leaderboard, fold scores."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as skm

from stacking import evaluate
from stacking.evaluate import (
    Entry,
    format_leaderboard,
    leaderboard,
    paired_bootstrap,
    score_entry,
)
from stacking.folds import FoldPlan
from stacking.metrics import get_metric


def _probas(y, n_classes, strength, seed):
    """Softmax of ``strength`` on the true class plus unit noise: right only sometimes."""
    rng = np.random.default_rng(seed)
    z = strength * np.eye(n_classes)[y] + rng.normal(0, 1, (len(y), n_classes))
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _problem(task, n=120, seed=0):
    """Targets of imbalanced classes (labels) and two noisy predictions, ``a`` better than
    ``b``; neither is right on every row, so no label metric is 1.0 (see
    test_problem_gives_label_metrics_values_that_can_be_wrong)."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(size=n)
        return y, y + rng.normal(0, 0.3, n), y + rng.normal(0, 0.6, n)
    if task == "multilabel":
        y = (rng.uniform(size=(n, 3)) < np.array([0.2, 0.45, 0.7])).astype(int)

        def noisy(strength):
            z = strength * (2 * y - 1) + rng.normal(0, 1, y.shape)
            return np.clip(1 / (1 + np.exp(-z)), 0.01, 0.99)

        return y, noisy(1.5), noisy(0.6)
    c = 2 if task == "binary" else 3
    prior = np.linspace(3, 1, c)
    y = rng.choice(c, size=n, p=prior / prior.sum())
    return y, _probas(y, c, 1.2, seed + 1), _probas(y, c, 0.5, seed + 2)


def _reference_score(name, y, p, w, task):
    """The metric on one resample, straight from scikit-learn."""
    if name == "log_loss":
        if task == "multilabel":  # the mean over labels, row by row
            w = None if w is None else np.repeat(w, y.shape[1])
            return skm.log_loss(y.ravel(), p.ravel(), labels=[0, 1], sample_weight=w)
        return skm.log_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=w)
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
    if name == "r2":
        return skm.r2_score(y, p, sample_weight=w)
    labels = (p >= 0.5).astype(int) if task == "multilabel" else p.argmax(axis=1)
    if name == "accuracy":
        return skm.accuracy_score(y, labels, sample_weight=w)
    if name.startswith("f1_"):
        average = name.removeprefix("f1_")
        return skm.f1_score(y, labels, average=average, sample_weight=w)
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, labels, sample_weight=w)
    if name == "matthews_corrcoef":
        return skm.matthews_corrcoef(y, labels, sample_weight=w)
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


LABEL_METRICS = ["accuracy", "f1_macro", "f1_micro", "f1_weighted"]
SINGLE_LABEL_METRICS = ["balanced_accuracy", "matthews_corrcoef"]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_problem_gives_label_metrics_values_that_can_be_wrong(task):
    """Where a prediction is right on every row, a metric that returns 1.0 passes; where
    two averages agree, one computed as the other does. Neither holds here."""
    y, a, b = _problem(task)
    w = np.random.default_rng(5).uniform(0.2, 2.0, len(y))
    names = LABEL_METRICS + (SINGLE_LABEL_METRICS if task != "multilabel" else [])
    for pred in (a, b):
        plain = {m: _reference_score(m, y, pred, None, task) for m in names}
        weighted = {m: _reference_score(m, y, pred, w, task) for m in names}
        for m in names:
            assert 0.05 < plain[m] < 0.95 and 0.05 < weighted[m] < 0.95, (m, plain[m])
            assert abs(plain[m] - weighted[m]) > 1e-4, m
        pairs = [("f1_macro", "f1_micro"), ("f1_macro", "f1_weighted"), ("f1_micro", "f1_weighted")]
        pairs += [("balanced_accuracy", "accuracy")] if task != "multilabel" else []
        for m1, m2 in pairs:
            assert abs(plain[m1] - plain[m2]) > 1e-4, (m1, m2, plain[m1])
    assert _reference_score("accuracy", y, a, None, task) > _reference_score(
        "accuracy", y, b, None, task
    )


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
        ("f1_micro", "multilabel"),
        ("f1_weighted", "multiclass"),
        ("balanced_accuracy", "binary"),
        ("matthews_corrcoef", "multiclass"),
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
    expected = _reference_bootstrap("log_loss", y, stack, strong, "binary", 80, seed=2)
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


# Metrics whose higher value is better, written out here rather than read from the package.
GREATER = {"accuracy", "balanced_accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc"}
GREATER |= {"matthews_corrcoef", "r2"}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    ("task", "metrics"),
    [
        ("binary", ["balanced_accuracy", "log_loss", "f1_micro", "roc_auc"]),
        ("multiclass", ["f1_weighted", "accuracy", "f1_macro", "matthews_corrcoef"]),
        ("multiclass", ["log_loss", "brier_score", "f1_micro"]),
        ("multilabel", ["f1_micro", "log_loss", "f1_weighted"]),
        ("regression", ["mae", "r2", "rmse"]),
    ],
)
def test_leaderboard_equals_an_independent_recomputation(task, metrics, weighted):
    """Every score, fold spread, best base, interval and the order, recomputed here with
    scikit-learn and a loop over the bootstrap's resamples."""
    n, n_resamples, seed = 90, 30, 5
    y, strong, weak = _problem(task, n=n, seed=3)
    _, other_a, other_b = _problem(task, n=n, seed=4)
    specs = [
        ("strong", "base", strong),
        ("weak", "base", weak),
        ("mean", "base_mean", (strong + weak) / 2),
        ("stack_a", "meta", (strong + other_a) / 2),
        ("stack_b", "meta", (weak + other_b) / 2),
    ]
    w = np.random.default_rng(6).uniform(0.2, 2.0, n) if weighted else None
    plan = _plan(n)
    entries = [Entry(name, role, 2 if role == "meta" else 1, oof) for name, role, oof in specs]
    for entry in entries:
        score_entry(entry, y, plan, task=task, metrics=metrics, sample_weight=w)
    board = leaderboard(
        entries,
        y,
        task=task,
        metrics=metrics,
        selected="stack_a",
        n_resamples=n_resamples,
        seed=seed,
        sample_weight=w,
    )

    primary = metrics[0]
    sign = -1 if primary in GREATER else 1  # sort key: best first

    def on(rows, oof, name):
        return _reference_score(name, y[rows], oof[rows], None if w is None else w[rows], task)

    everything = np.arange(n)
    folds = [np.flatnonzero(plan.folds == k) for k in range(3)]
    scores = {name: {m: on(everything, oof, m) for m in metrics} for name, _, oof in specs}
    bases = [(name, oof) for name, role, oof in specs if role == "base"]
    best_name, best_oof = min(bases, key=lambda b: sign * scores[b[0]][primary])
    assert best_name == "strong"  # the fixture's better base model
    expected_order = sorted(scores, key=lambda name: sign * scores[name][primary])
    assert list(board["model"]) == expected_order
    board = board.set_index("model")
    for name, role, oof in specs:
        row = board.loc[name]
        for m in metrics:
            assert_allclose(row[f"cv_{m}"], scores[name][m], rtol=1e-10, err_msg=(name, m))
        spread = np.std([on(rows, oof, primary) for rows in folds])
        assert_allclose(row[f"cv_{primary}_std"], spread, rtol=1e-9, atol=1e-15)
        interval = row[["delta_vs_best_base", "ci_low", "ci_high"]].to_numpy(dtype=float)
        if role == "base":
            assert np.isnan(interval).all(), name
        else:
            expected = _reference_bootstrap(primary, y, oof, best_oof, task, n_resamples, seed, w)
            assert_allclose(interval, expected, rtol=1e-9, atol=1e-12, err_msg=name)
        assert row["selected"] == (name == "stack_a")
        assert row["level"] == (2 if role == "meta" else 1) and row["role"] == role
