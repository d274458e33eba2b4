"""Analytic paired intervals (t for means of per-row values, DeLong for ROC AUC) against a
direct O(n^2) DeLong, against the paired bootstrap (width), and on simulations (coverage);
and the leaderboard's choice between them (``interval``, ``bootstrap_max_rows``)."""

from __future__ import annotations

import numpy as np
import pytest

from stacking.evaluate import (
    Entry,
    analytic_interval,
    delong_components,
    leaderboard,
    paired_bootstrap,
    repeat_interval,
    score_entry,
)
from stacking.folds import FoldPlan
from stacking.metrics import get_metric
from stacking.numeric import softmax


def _classification(n, classes, seed, *, ties=False):
    """Labels and two correlated predictions of different quality."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    shared = rng.normal(size=(n, classes))
    truth = np.eye(classes)[y]
    a = softmax(1.6 * truth + shared + 0.5 * rng.normal(size=(n, classes)))
    b = softmax(1.3 * truth + shared + 0.8 * rng.normal(size=(n, classes)))
    if ties:  # coarse scores: many tied values, as calibrated or quantised models give
        a, b = np.round(a, 1) + 1e-3, np.round(b, 1) + 1e-3
    return y, a, b


def _regression(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    shared = rng.normal(0, 0.5, n)
    return y, y + shared + rng.normal(0, 0.3, n), y + shared + rng.normal(0, 0.45, n)


def _delong_direct(y, a, b, task):
    """DeLong's paired variance of the macro AUC difference from the full n_pos x n_neg
    comparison matrices: V10 = row means, V01 = column means, S = sample covariances."""
    if task == "binary":
        columns = [(a[:, 1], b[:, 1], y == 1)]
    else:
        an, bn = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
        columns = [(an[:, j], bn[:, j], y == j) for j in range(a.shape[1])]
    terms = np.zeros(len(y))
    for sa, sb, pos in columns:
        m, k = pos.sum(), (~pos).sum()
        parts = []
        for s in (sa, sb):
            psi = (s[pos][:, None] > s[~pos][None, :]) + 0.5 * (s[pos][:, None] == s[~pos][None, :])
            v10, v01, auc = psi.mean(axis=1), psi.mean(axis=0), psi.mean()
            row = np.zeros(len(y))
            row[pos] = (v10 - auc) / np.sqrt(m * (m - 1))
            row[~pos] = (v01 - auc) / np.sqrt(k * (k - 1))
            parts.append(row)
        terms += (parts[0] - parts[1]) / len(columns)
    return np.sum(terms**2)


def test_intervals_delong_binary_equals_the_textbook_formula():
    """Binary, with ties: the variance equals (S10_a + S10_b - 2 S10_ab)/m + (S01 ...)/k."""
    y, a, b = _classification(300, 2, seed=0, ties=True)
    pos = y == 1
    v = {}
    for name, p in (("a", a[:, 1]), ("b", b[:, 1])):
        psi = (p[pos][:, None] > p[~pos][None, :]) + 0.5 * (p[pos][:, None] == p[~pos][None, :])
        v[name] = psi.mean(axis=1), psi.mean(axis=0)
    s10 = np.cov(v["a"][0], v["b"][0])
    s01 = np.cov(v["a"][1], v["b"][1])
    m, k = pos.sum(), (~pos).sum()
    textbook = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]
    ) / k
    ours = delong_components(y, a, task="binary") - delong_components(y, b, task="binary")
    np.testing.assert_allclose(np.sum(ours**2), textbook, rtol=1e-10)


@pytest.mark.parametrize(
    ("task", "classes", "ties"), [("binary", 2, False), ("multiclass", 4, True)]
)
def test_intervals_delong_variance_equals_a_direct_quadratic_computation(task, classes, ties):
    y, a, b = _classification(240, classes, seed=1, ties=ties)
    ours = delong_components(y, a, task=task) - delong_components(y, b, task=task)
    np.testing.assert_allclose(np.sum(ours**2), _delong_direct(y, a, b, task), rtol=1e-10)
    _, low, high, method = analytic_interval(get_metric("roc_auc"), y, a, b, task=task)
    assert method == "delong"
    np.testing.assert_allclose((high - low) / 2, 1.959964 * np.sqrt(np.sum(ours**2)), rtol=1e-6)


CASES = [
    ("log_loss", "multiclass", "t"),
    ("accuracy", "multiclass", "t"),
    ("brier_score", "binary", "t"),
    ("roc_auc", "binary", "delong"),
    ("roc_auc", "multiclass", "delong"),
    ("mse", "regression", "t"),
    ("rmse", "regression", "t"),
    ("mae", "regression", "t"),
]


def _data(task, n, seed):
    if task == "regression":
        return _regression(n, seed)
    return _classification(n, 2 if task == "binary" else 4, seed)


@pytest.mark.parametrize(("name", "task", "method"), CASES)
def test_intervals_analytic_width_and_centre_agree_with_the_bootstrap(name, task, method):
    """n = 3,000, 2,000 paired resamples: widths within 15 %, the same delta, and the
    centres within a tenth of the width."""
    metric = get_metric(name)
    y, a, b = _data(task, 3000, seed=2)
    delta, low, high, got = analytic_interval(metric, y, a, b, task=task)
    b_delta, b_low, b_high = paired_bootstrap(metric, y, a, b, task=task, n_resamples=2000)
    assert got == method
    assert delta == pytest.approx(b_delta, abs=1e-12)
    ratio = (high - low) / (b_high - b_low)
    assert 0.85 < ratio < 1.15, ratio
    assert abs((low + high) / 2 - (b_low + b_high) / 2) < 0.1 * (high - low)


def test_intervals_weighted_mean_agrees_with_the_weighted_bootstrap():
    metric = get_metric("log_loss")
    y, a, b = _classification(3000, 3, seed=3)
    w = np.random.default_rng(3).uniform(0.2, 3.0, len(y))
    _, low, high, _ = analytic_interval(metric, y, a, b, task="multiclass", sample_weight=w)
    _, b_low, b_high = paired_bootstrap(
        metric, y, a, b, task="multiclass", n_resamples=2000, sample_weight=w
    )
    assert 0.85 < (high - low) / (b_high - b_low) < 1.15
    # The weights matter: unweighted, the interval is another one.
    _, u_low, u_high, _ = analytic_interval(metric, y, a, b, task="multiclass")
    assert abs((u_high - u_low) - (high - low)) > 0.02 * (high - low)


@pytest.mark.parametrize(
    ("name", "task"), [("log_loss", "multiclass"), ("roc_auc", "binary"), ("rmse", "regression")]
)
def test_intervals_analytic_coverage_on_simulations(name, task):
    """400 samples of 400 rows from a 200,000-row population: the 95 % interval holds the
    population's difference in 91-99 % of them (binomial sd 1.1 %)."""
    metric = get_metric(name)
    y, a, b = _data(task, 200_000, seed=4)
    true = metric(y, a, task=task) - metric(y, b, task=task)
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(400):
        rows = rng.integers(0, len(y), 400)
        _, low, high, _ = analytic_interval(metric, y[rows], a[rows], b[rows], task=task)
        hits += low <= true <= high
    assert 0.91 <= hits / 400 <= 0.99, hits


def _entries(y, a, b):
    plan = FoldPlan(ids=np.arange(len(y)), folds=np.arange(len(y)) % 3)
    entries = [Entry("base_a", "base", 1, a), Entry("stack", "meta", 2, b)]
    for e in entries:
        score_entry(e, y, plan, task="multiclass", metrics=["log_loss", "roc_auc", "f1_macro"])
    return entries


@pytest.mark.parametrize(
    ("metrics", "interval", "max_rows", "weighted", "expected"),
    [
        (["log_loss"], "auto", 20_000, False, "bootstrap"),  # n = 1,500: small
        (["log_loss"], "auto", 1_000, False, "t"),
        (["roc_auc"], "auto", 1_000, False, "delong"),
        (["roc_auc"], "auto", 1_000, True, "bootstrap"),  # no weighted DeLong
        (["f1_macro"], "analytic", 20_000, False, "bootstrap"),  # no closed form
        (["log_loss"], "bootstrap", 1_000, False, "bootstrap"),
        (["log_loss"], "analytic", 20_000, False, "t"),
    ],
)
def test_intervals_leaderboard_records_the_method(metrics, interval, max_rows, weighted, expected):
    y, a, b = _classification(1500, 3, seed=6)
    w = np.random.default_rng(6).uniform(0.5, 2.0, len(y)) if weighted else None
    board = leaderboard(
        _entries(y, a, b),
        y,
        task="multiclass",
        metrics=metrics,
        selected="stack",
        n_resamples=100,
        sample_weight=w,
        interval=interval,
        bootstrap_max_rows=max_rows,
    ).set_index("model")
    assert board.loc["stack", "ci_method"] == expected
    assert board.loc["base_a", "ci_method"] == ""
    low, high = board.loc["stack", ["ci_low", "ci_high"]]
    assert low < board.loc["stack", "delta_vs_best_base"] < high


def test_intervals_bootstrap_zero_turns_them_off_and_auto_below_the_threshold_is_unchanged():
    y, a, b = _classification(1500, 3, seed=7)
    kwargs = dict(task="multiclass", metrics=["log_loss"], selected="stack")
    off = leaderboard(_entries(y, a, b), y, n_resamples=0, interval="analytic", **kwargs)
    assert off.set_index("model").loc["stack", "ci_method"] == "none"
    assert off.ci_low.isna().all()
    auto = leaderboard(_entries(y, a, b), y, n_resamples=300, **kwargs).set_index("model")
    _, low, high = paired_bootstrap(
        get_metric("log_loss"), y, b, a, task="multiclass", n_resamples=300
    )
    assert tuple(auto.loc["stack", ["ci_low", "ci_high"]]) == (low, high)


# -- meta.repeats: the difference averaged over splits, and its interval ----------------------


def _repeats(y, a, seed, k=3):
    """``k`` noisy variants of prediction ``a``, as re-splits of a learned meta level give."""
    rng = np.random.default_rng(seed)
    return [softmax(np.log(a) + 0.3 * rng.normal(size=a.shape)) for _ in range(k)]


def _row_losses(y, p):
    return -np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1))


def test_repeat_interval_bootstrap_equals_a_direct_recomputation():
    """Every repeat and the base on the same resampled rows; their mean difference."""
    from scipy import stats

    y, a, base = _classification(300, 3, seed=11)
    reps = _repeats(y, a, seed=12)
    metric = get_metric("log_loss")
    kw = dict(task="multiclass", n_resamples=500, seed=4)
    delta, low, high, how = repeat_interval(metric, y, reps, base, method="bootstrap", **kw)
    gap = np.mean([_row_losses(y, r) for r in reps], axis=0) - _row_losses(y, base)
    draws = np.random.default_rng(4).integers(0, len(y), size=(500, len(y)))
    want_low, want_high = np.percentile(gap[draws].mean(axis=1), [2.5, 97.5])
    assert how == "bootstrap"
    assert delta == pytest.approx(gap.mean(), rel=1e-9)
    assert (low, high) == pytest.approx((want_low, want_high), rel=1e-9)
    # the analytic one: a t interval on the per-row differences averaged over repeats
    delta, low, high, how = repeat_interval(metric, y, reps, base, method="analytic", **kw)
    half = stats.t.ppf(0.975, len(y) - 1) * gap.std(ddof=1) / np.sqrt(len(y))
    assert how == "t"
    assert (delta, low, high) == pytest.approx((gap.mean(), gap.mean() - half, gap.mean() + half))


@pytest.mark.parametrize(("name", "method"), [("log_loss", "bootstrap"), ("roc_auc", "analytic")])
def test_repeat_interval_of_equal_repeats_is_the_single_split_interval(name, method):
    """A combiner that learns nothing has the same OOF on every split: its interval over
    repeats is the fold plan's own."""
    y, a, base = _classification(200, 2, seed=13)
    metric = get_metric(name)
    found = repeat_interval(
        metric, y, [a, a, a], base, task="binary", method=method, n_resamples=300, seed=2
    )
    if method == "bootstrap":
        single = paired_bootstrap(metric, y, a, base, task="binary", n_resamples=300, seed=2)
        assert found[:3] == pytest.approx(single, rel=1e-12) and found[3] == "bootstrap"
    else:
        single = analytic_interval(metric, y, a, base, task="binary")
        assert found[:3] == pytest.approx(single[:3], rel=1e-12)
        assert found[3] == single[3] == "delong"
