"""Metric values that can tell right from wrong: every score non-trivial, checked against
scikit-learn on all rows, per fold and per resample, with and without weights.

The data are noisy predictions (no metric is 0 or 1), with classes of unequal size, so that
macro, micro and weighted averages differ and a weight changes every score. These tests
were written against the mutants ``make mutation`` left alive (docs/mutation.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from stacking.metrics import available_metrics, default_metrics, get_metric

N = 90
FOLDS = np.arange(N) % 3


def _case(task: str, seed: int = 0):
    """``(y, pred, weights)``: informative but imperfect predictions, with tied scores."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(size=N)
        return y, y + rng.normal(0, 0.7, N), rng.uniform(0.2, 3.0, N)
    if task == "multilabel":
        y = (rng.uniform(size=(N, 3)) < [0.2, 0.5, 0.7]).astype(int)
        pred = np.clip(0.35 * y + rng.uniform(0, 0.65, (N, 3)), 0, 1).round(1)  # ties
        return y, pred, rng.uniform(0.2, 3.0, N)
    n_classes = 2 if task == "binary" else 3
    y = rng.choice(
        n_classes, N, p=[0.5, 0.3, 0.2][:n_classes] / np.sum([0.5, 0.3, 0.2][:n_classes])
    )
    logits = rng.normal(size=(N, n_classes)) + 1.2 * np.eye(n_classes)[y]
    pred = np.exp(logits.round(1))
    return y, pred / pred.sum(axis=1, keepdims=True), rng.uniform(0.2, 3.0, N)


def _labels(pred, task):
    return (pred >= 0.5).astype(int) if task == "multilabel" else pred.argmax(axis=1)


LABEL_METRICS = {
    "balanced_accuracy": (skm.balanced_accuracy_score, {}),
    "f1": (skm.f1_score, {"average": "binary"}),
    "f1_macro": (skm.f1_score, {"average": "macro"}),
    "f1_micro": (skm.f1_score, {"average": "micro"}),
    "f1_weighted": (skm.f1_score, {"average": "weighted"}),
    "matthews_corrcoef": (skm.matthews_corrcoef, {}),
}
LABEL_CASES = [
    (name, task)
    for name in LABEL_METRICS
    for task in ("binary", "multiclass", "multilabel")
    if task in get_metric(name).tasks
]


def _expected(name, task, y, pred, w):
    if name in LABEL_METRICS:
        func, kwargs = LABEL_METRICS[name]
        return func(y, _labels(pred, task), sample_weight=w, **kwargs)
    if name == "roc_auc":
        return skm.roc_auc_score(
            y, pred[:, 1] if task == "binary" else pred, sample_weight=w, multi_class="ovr"
        )
    func = {"r2": skm.r2_score, "explained_variance": skm.explained_variance_score}[name]
    return func(y, pred, sample_weight=w)


SUBSET_CASES = [
    *LABEL_CASES,
    ("roc_auc", "binary"),
    ("roc_auc", "multiclass"),
    ("roc_auc", "multilabel"),
    ("r2", "regression"),
    ("explained_variance", "regression"),
]


@pytest.mark.parametrize(("name", "task"), SUBSET_CASES, ids=["-".join(c) for c in SUBSET_CASES])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_metric_equals_scikit_learn_on_rows_folds_and_resamples(name, task, weighted):
    y, pred, w = _case(task)
    w = w if weighted else None
    metric = get_metric(name)
    prepared = metric.prepare(y, pred, task=task)
    expected = _expected(name, task, y, pred, w)
    assert 0.05 < abs(expected) < 0.97  # a value a wrong formula would not hit by chance
    assert prepared.score(w) == pytest.approx(expected, rel=1e-12)
    assert metric(y, pred, task=task, sample_weight=w) == pytest.approx(expected, rel=1e-12)

    folds = prepared.fold_scores(FOLDS, 3, w)
    assert folds.shape == (3,)
    for k in range(3):
        rows = k == FOLDS
        sub_w = None if w is None else w[rows]
        assert folds[k] == pytest.approx(_expected(name, task, y[rows], pred[rows], sub_w))

    idx = np.random.default_rng(1).integers(0, N, size=(3, N))
    resampled = prepared.resample_scores(idx, w)
    assert resampled.shape == (3,)
    for b in range(3):
        sub_w = None if w is None else w[idx[b]]
        assert resampled[b] == pytest.approx(_expected(name, task, y[idx[b]], pred[idx[b]], sub_w))


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_label_averages_differ_so_a_swapped_average_fails(task):
    y, pred, w = _case(task)
    scores = {
        name: get_metric(name)(y, pred, task=task, sample_weight=w)
        for name in ("f1_macro", "f1_micro", "f1_weighted")
    }
    assert len({round(v, 6) for v in scores.values()}) == 3, scores
    unweighted = get_metric("f1_weighted")(y, pred, task=task)
    assert abs(unweighted - scores["f1_weighted"]) > 1e-3


def test_undefined_call_metric_resample_is_nan():
    """A resample where scikit-learn raises (r2 needs two rows... and y_true of one value
    still scores; balanced accuracy on one class warns) is NaN, the others are scored."""
    y, pred, _ = _case("regression")
    prepared = get_metric("r2").prepare(y, pred, task="regression")
    idx = np.array([[0, 1, 2, 3], [5, 6, 7, 8]])
    got = prepared.resample_scores(idx)
    assert got == pytest.approx([skm.r2_score(y[r], pred[r]) for r in idx])


ROW_METRICS = [
    ("log_loss", "binary"),
    ("log_loss", "multiclass"),
    ("log_loss", "multilabel"),
    ("brier_score", "binary"),
    ("brier_score", "multiclass"),
    ("brier_score", "multilabel"),
    ("accuracy", "multiclass"),
    ("accuracy", "multilabel"),
    ("rmse", "regression"),
    ("mse", "regression"),
    ("mae", "regression"),
    ("mape", "regression"),
]


def _row_expected(name, task, y, pred, w=None):
    if name == "log_loss":
        if task == "multilabel":
            p = np.clip(pred, 1e-15, 1 - 1e-15)
            per = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
            return np.average(per, weights=w)
        p = np.clip(pred, 1e-15, None)  # rows renormalised, as scikit-learn requires
        return np.average(-np.log(p[np.arange(len(y)), y] / p.sum(axis=1)), weights=w)
    if name == "brier_score":
        if task == "binary":
            return skm.brier_score_loss(y, pred[:, 1], sample_weight=w)
        onehot = y if task == "multilabel" else np.eye(pred.shape[1])[y]
        return np.average(((pred - onehot) ** 2).sum(axis=1), weights=w)
    if name == "accuracy":
        return skm.accuracy_score(y, _labels(pred, task), sample_weight=w)
    func = {
        "rmse": skm.root_mean_squared_error,
        "mse": skm.mean_squared_error,
        "mae": skm.mean_absolute_error,
        "mape": skm.mean_absolute_percentage_error,
    }[name]
    return func(y, pred, sample_weight=w)


@pytest.mark.parametrize(("name", "task"), ROW_METRICS, ids=["-".join(c) for c in ROW_METRICS])
def test_row_metric_folds_and_weighted_resamples_equal_scikit_learn(name, task):
    y, pred, w = _case(task, seed=3)
    if task != "regression":
        pred = pred.astype(np.float32)  # computed in float64 whatever the input dtype
    prepared = get_metric(name).prepare(y, pred, task=task)
    p64 = np.asarray(pred, dtype=np.float64)
    assert prepared.score(w) == pytest.approx(_row_expected(name, task, y, p64, w), rel=1e-9)
    folds = prepared.fold_scores(FOLDS, 3, w)
    assert folds.shape == (3,)
    for k in range(3):
        rows = k == FOLDS
        expected = _row_expected(name, task, y[rows], p64[rows], w[rows])
        assert folds[k] == pytest.approx(expected, rel=1e-9)
    idx = np.random.default_rng(2).integers(0, N, size=(2, N))
    for b, got in enumerate(prepared.resample_scores(idx, w)):
        rows = idx[b]
        assert got == pytest.approx(_row_expected(name, task, y[rows], p64[rows], w[rows]))


def test_log_loss_renormalises_rows_and_clips_zero_probabilities():
    y = np.array([0, 1, 2, 1])
    pred = np.array([[0.5, 0.3, 0.2], [0.2, 0.4, 0.2], [0.6, 0.4, 0.0], [0.1, 0.1, 0.1]])
    p = np.clip(pred, 1e-15, 1)
    expected = np.mean(-np.log(p[np.arange(4), y] / p.sum(axis=1)))
    assert get_metric("log_loss")(y, pred, task="multiclass") == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(expected) and expected > 5  # the clipped zero dominates


def test_minus_is_the_difference_of_two_predictions_for_plain_means():
    y, a, _ = _case("multiclass", seed=4)
    _, b, _ = _case("multiclass", seed=5)
    metric = get_metric("log_loss")
    pa, pb = metric.prepare(y, a, task="multiclass"), metric.prepare(y, b, task="multiclass")
    diff = pa.minus(pb)
    assert diff is not None
    assert diff.score() == pytest.approx(pa.score() - pb.score(), rel=1e-12)
    assert abs(diff.score()) > 1e-3
    # Not a plain mean (sqrt after the mean), another metric, a rank metric: no difference.
    yr, r1, _ = _case("regression", seed=4)
    rmse = get_metric("rmse")
    assert (
        rmse.prepare(yr, r1, task="regression").minus(rmse.prepare(yr, r1 + 1, task="regression"))
        is None
    )
    brier = get_metric("brier_score").prepare(y, b, task="multiclass")
    assert pa.minus(brier) is None
    auc = get_metric("roc_auc").prepare(y, b, task="multiclass")
    assert pa.minus(auc) is None and auc.minus(pa) is None
    mse = get_metric("mse")
    d = mse.prepare(yr, r1, task="regression").minus(mse.prepare(yr, r1 + 1, task="regression"))
    assert d is not None and d.score() == pytest.approx(
        skm.mean_squared_error(yr, r1) - skm.mean_squared_error(yr, r1 + 1)
    )


def test_default_metrics_per_task_and_the_metric_list():
    assert default_metrics("regression") == ["rmse", "mae", "r2"]
    assert default_metrics("multilabel") == ["log_loss", "roc_auc", "accuracy"]
    assert default_metrics("binary") == ["log_loss", "accuracy", "roc_auc"]
    assert default_metrics("multiclass") == ["log_loss", "accuracy", "roc_auc"]
    assert available_metrics() == sorted(available_metrics())
    assert len(available_metrics()) == 17  # 16 scorer names and ece
    assert "ece" in available_metrics()


def test_metric_directions_and_better():
    for name, greater in [("log_loss", False), ("roc_auc", True), ("r2", True), ("mae", False)]:
        metric = get_metric(name)
        assert metric.greater_is_better is greater
        assert metric.better(2.0, 1.0) is greater and metric.better(1.0, 2.0) is not greater
        assert not metric.better(1.0, 1.0)
        assert metric.direction == ("higher is better" if greater else "lower is better")


def test_auc_resamples_in_several_blocks_equal_one_block(monkeypatch):
    """The resample blocks bound memory only: every resample is scored once, in order."""
    from stacking import metrics

    y, pred, w = _case("multiclass", seed=6)
    idx = np.random.default_rng(3).integers(0, N, size=(7, N))
    prepared = get_metric("roc_auc").prepare(y, pred, task="multiclass")
    whole = prepared.resample_scores(idx, w)
    monkeypatch.setattr(metrics, "_BLOCK", 2 * N)  # blocks of 2 resamples: 2, 2, 2, 1
    np.testing.assert_allclose(prepared.resample_scores(idx, w), whole, rtol=1e-12)
    assert len(set(whole.round(12))) == 7


def test_undefined_auc_is_nan_with_one_warning_for_all_rows_and_per_fold():
    """No positive row at all: NaN and scikit-learn's one-class warning (per fold too, where
    the division used to fail on an integer array)."""
    y = np.zeros(6, dtype=int)
    pred = np.column_stack([np.linspace(0, 1, 6), np.linspace(1, 0, 6)])
    prepared = get_metric("roc_auc").prepare(y, pred, task="binary")
    with pytest.warns(UndefinedMetricWarning, match="Only one class") as record:
        assert np.isnan(prepared.score())
    assert len(record) == 1
    with pytest.warns(UndefinedMetricWarning) as record:
        assert np.isnan(prepared.fold_scores(np.arange(6) % 2, 2)).all()
    assert len(record) == 1
