"""The bootstrap and the leaderboard against a recomputation written here from their
documented definitions: scikit-learn metrics on ``default_rng(seed).integers(0, n, (B, n))``
resamples, percentiles 2.5/97.5, fold std, best-first order, the best base as reference.

Written against the mutants ``make mutation`` left alive in stacking/evaluate.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from stacking import evaluate
from stacking.evaluate import Entry, format_leaderboard, leaderboard, paired_bootstrap, score_entry
from stacking.folds import FoldPlan
from stacking.metrics import get_metric

N, B = 80, 40


def _probas(y, strength, seed, n_classes=3):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(y), n_classes)) + strength * np.eye(n_classes)[y]
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    y = rng.choice(3, N, p=[0.5, 0.3, 0.2])
    w = rng.uniform(0.3, 3.0, N)
    return y, _probas(y, 1.5, 1), _probas(y, 0.8, 2), w


SKLEARN = {
    "log_loss": lambda y, p, w: skm.log_loss(y, p, sample_weight=w, labels=[0, 1, 2]),
    "roc_auc": lambda y, p, w: skm.roc_auc_score(
        y, p, sample_weight=w, multi_class="ovr", labels=[0, 1, 2]
    ),
    "accuracy": lambda y, p, w: skm.accuracy_score(y, p.argmax(axis=1), sample_weight=w),
    "f1_macro": lambda y, p, w: skm.f1_score(
        y, p.argmax(axis=1), sample_weight=w, average="macro", labels=[0, 1, 2]
    ),
}


def _expected_bootstrap(name, y, a, b, w, seed):
    f = SKLEARN[name]
    idx = np.random.default_rng(seed).integers(0, len(y), size=(B, len(y)))
    diffs = []
    for rows in idx:
        ww = None if w is None else w[rows]
        diffs.append(f(y[rows], a[rows], ww) - f(y[rows], b[rows], ww))
    delta = f(y, a, w) - f(y, b, w)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return delta, low, high


@pytest.mark.parametrize("name", sorted(SKLEARN))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("block", [None, 3 * N], ids=["one-block", "blocks-of-3"])
def test_paired_bootstrap_equals_recomputation(case, name, weighted, block, monkeypatch):
    """Also across resample blocks: the drawn stream is one integers() call."""
    y, a, b, w = case
    w = w if weighted else None
    if block is not None:
        monkeypatch.setattr(evaluate, "_BLOCK", block)
    got = paired_bootstrap(
        get_metric(name), y, a, b, task="multiclass", n_resamples=B, seed=5, sample_weight=w
    )
    expected = _expected_bootstrap(name, y, a, b, w, seed=5)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got[1] < got[0] < got[2] and got[2] - got[1] > 1e-3  # a real interval
    assert (
        paired_bootstrap(
            get_metric(name), y, a, b, task="multiclass", n_resamples=B, seed=6, sample_weight=w
        )
        != got
    )


def test_bootstrap_of_root_metric_is_not_a_difference_of_means():
    """rmse = sqrt(mean): its resample differences are of square roots, not of rows."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=N)
    a, b = y + rng.normal(0, 0.5, N), y + rng.normal(0, 0.9, N)
    got = paired_bootstrap(get_metric("rmse"), y, a, b, task="regression", n_resamples=B, seed=1)
    idx = np.random.default_rng(1).integers(0, N, size=(B, N))
    diffs = [
        skm.root_mean_squared_error(y[r], a[r]) - skm.root_mean_squared_error(y[r], b[r])
        for r in idx
    ]
    delta = skm.root_mean_squared_error(y, a) - skm.root_mean_squared_error(y, b)
    assert got == pytest.approx((delta, *np.percentile(diffs, [2.5, 97.5])), rel=1e-9)


def test_undefined_resamples_are_left_out_and_all_undefined_is_nan():
    y = np.array([0] * 9 + [1])
    p = np.column_stack([np.linspace(0.9, 0.1, 10), np.linspace(0.1, 0.9, 10)])
    q = p[::-1].copy()
    auc = get_metric("roc_auc")
    delta, low, high = paired_bootstrap(auc, y, p, q, task="binary", n_resamples=30, seed=0)
    idx = np.random.default_rng(0).integers(0, 10, size=(30, 10))
    diffs = [
        skm.roc_auc_score(y[r], p[r, 1]) - skm.roc_auc_score(y[r], q[r, 1])
        for r in idx
        if len(set(y[r])) == 2
    ]
    assert 0 < len(diffs) < 30  # some resamples have one class only
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert delta == pytest.approx(1.0 - 0.0)
    out = evaluate._interval(0.5, np.array([np.nan, np.nan]))
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2])
    out = evaluate._interval(0.5, np.array([]))
    assert out[0] == 0.5 and np.isnan(out[1]) and np.isnan(out[2])


def _entries(y):
    return [
        Entry("weak", "base", 0, _probas(y, 0.5, 11)),
        Entry("strong", "base", 0, _probas(y, 1.6, 12)),
        Entry("mean", "base_mean", 0, _probas(y, 1.2, 13)),
        Entry("stack", "meta", 1, _probas(y, 2.2, 14)),
    ]


@pytest.mark.parametrize("primary", ["log_loss", "accuracy"])
def test_leaderboard_rows_order_reference_and_intervals(case, primary):
    y, *_, w = case
    plan = FoldPlan(ids=np.arange(N).astype(str), folds=np.arange(N) % 4)
    metrics = [primary, "roc_auc" if primary == "log_loss" else "log_loss"]
    entries = _entries(y)
    for e in entries:
        score_entry(e, y, plan, task="multiclass", metrics=metrics, sample_weight=w)
        for name in metrics:
            assert e.scores[name] == pytest.approx(SKLEARN[name](y, e.oof, w))
            rows = [plan.folds == k for k in range(4)]
            folds = [SKLEARN[name](y[r], e.oof[r], w[r]) for r in rows]
            assert e.fold_scores[name] == pytest.approx(folds)
    frame = leaderboard(
        entries,
        y,
        task="multiclass",
        metrics=metrics,
        selected="stack",
        n_resamples=B,
        seed=2,
        sample_weight=w,
    )
    metric = get_metric(primary)
    key = f"cv_{primary}"
    values = frame[key].to_numpy()
    assert list(values) == sorted(values, reverse=metric.greater_is_better)
    assert frame["model"].iloc[0] == "stack" and frame["model"].iloc[-1] == "weak"
    assert list(frame.columns) == [
        "model",
        "role",
        "level",
        f"cv_{metrics[0]}",
        f"cv_{metrics[1]}",
        f"{key}_std",
        "delta_vs_best_base",
        "ci_low",
        "ci_high",
        "ci_method",
        "selected",
    ]
    by = frame.set_index("model")
    for e in entries:
        assert by.loc[e.name, f"{key}_std"] == pytest.approx(np.std(e.fold_scores[primary]))
        assert by.loc[e.name, "level"] == e.level and by.loc[e.name, "role"] == e.role
    assert by["selected"].tolist().count(True) == 1 and by.loc["stack", "selected"]
    assert by.loc[["weak", "strong"], "delta_vs_best_base"].isna().all()
    # The reference is the best base ("strong"), not the first or the worst.
    for name in ("mean", "stack"):
        a = next(e for e in entries if e.name == name).oof
        expected = _expected_bootstrap(primary, y, a, entries[1].oof, w, seed=2)
        got = tuple(by.loc[name, ["delta_vs_best_base", "ci_low", "ci_high"]])
        assert got == pytest.approx(expected, rel=1e-9)


def test_best_of_follows_the_metric_direction():
    es = [Entry(n, "base", 0, np.zeros((3, 2))) for n in "abc"]
    for e, v in zip(es, [0.4, 0.2, 0.3]):
        e.scores = {"log_loss": v, "accuracy": v}
    assert evaluate.best_of(es, get_metric("log_loss")).name == "b"
    assert evaluate.best_of(es, get_metric("accuracy")).name == "a"
    es[2].scores = {"log_loss": 0.2, "accuracy": 0.4}  # a tie keeps the first
    assert evaluate.best_of(es, get_metric("log_loss")).name == "b"
    assert evaluate.best_of(es, get_metric("accuracy")).name == "a"


def test_format_leaderboard_marks_the_selected_row():
    frame = pd.DataFrame(
        {
            "model": ["x", "y"],
            "cv_log_loss": [0.123456, 0.5],
            "ci_low": [np.nan, 0.1],
            "selected": [False, True],
        }
    )
    text = format_leaderboard(frame, get_metric("log_loss"))
    lines = text.splitlines()
    assert lines[0] == "leaderboard (out-of-fold; log_loss: lower is better)"
    assert lines[1].split() == ["model", "cv_log_loss", "ci_low", "selected"]
    assert lines[2].split() == ["x", "0.1235"]
    assert lines[3].split() == ["y", "0.5000", "0.1000", "*"]


def test_leaderboard_defaults_bases_only_and_ties(case):
    """1000 resamples from seed 0 unless told; a board of base models only has no
    intervals; equal scores keep the entries' order."""
    y = case[0]
    plan = FoldPlan(ids=np.arange(N).astype(str), folds=np.arange(N) % 4)
    entries = _entries(y)
    twin = Entry("twin", "base", 0, entries[0].oof.copy())
    entries.insert(1, twin)  # scores equal to "weak", listed after it
    for e in entries:
        score_entry(e, y, plan, task="multiclass", metrics=["log_loss"])
    kw = dict(task="multiclass", metrics=["log_loss"], selected="stack")
    default = leaderboard(entries, y, **kw)
    pd.testing.assert_frame_equal(default, leaderboard(entries, y, n_resamples=1000, seed=0, **kw))
    for other in ({"n_resamples": 999, "seed": 0}, {"n_resamples": 1000, "seed": 1}):
        changed = leaderboard(entries, y, **other, **kw)
        assert not np.allclose(changed["ci_low"].dropna(), default["ci_low"].dropna())
    assert default["model"].tolist()[-2:] == ["weak", "twin"]
    bases = leaderboard(entries[:3], y, task="multiclass", metrics=["log_loss"], selected="weak")
    assert bases["delta_vs_best_base"].isna().all() and bases["ci_low"].isna().all()
    assert bases["model"].tolist() == ["strong", "weak", "twin"]


def test_paired_bootstrap_defaults_are_1000_resamples_from_seed_0(case):
    y, a, b, _ = case
    metric = get_metric("log_loss")
    default = paired_bootstrap(metric, y, a, b, task="multiclass")
    assert default == paired_bootstrap(metric, y, a, b, task="multiclass", n_resamples=1000, seed=0)
    assert default != paired_bootstrap(metric, y, a, b, task="multiclass", n_resamples=999, seed=0)
    assert default != paired_bootstrap(metric, y, a, b, task="multiclass", n_resamples=1000, seed=1)


def test_one_resample_gives_its_difference_as_both_bounds(case):
    y, a, b, _ = case
    metric = get_metric("accuracy")
    _, low, high = paired_bootstrap(metric, y, a, b, task="multiclass", n_resamples=1, seed=3)
    rows = np.random.default_rng(3).integers(0, N, size=(1, N))[0]
    diff = SKLEARN["accuracy"](y[rows], a[rows], None) - SKLEARN["accuracy"](y[rows], b[rows], None)
    assert low == pytest.approx(diff) and high == pytest.approx(diff)
