"""Metrics equal scikit-learn's own computation; names, aliases, directions and errors."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from stacking.errors import ConfigError
from stacking.metrics import available_metrics, default_metrics, get_metric


def _classification(task, n=200, n_classes=3, seed=0):
    """Noisy predictions of imbalanced classes (labels): every label metric lands well
    inside (0, 1), and macro, micro and weighted averages, balanced and plain accuracy
    differ (see test_fixtures_give_every_label_metric_a_value_that_can_be_wrong)."""
    rng = np.random.default_rng(seed)
    if task == "multilabel":  # label prevalences .2 .. .7, the rarer labels the clearer
        y = (rng.uniform(size=(n, n_classes)) < np.linspace(0.2, 0.7, n_classes)).astype(int)
        z = np.linspace(1.6, 0.6, n_classes) * (2 * y - 1) + rng.normal(0, 1.2, y.shape)
        return y, np.clip(1 / (1 + np.exp(-z)), 0.01, 0.99)
    c = 2 if task == "binary" else n_classes
    prior = np.linspace(3, 1, c)  # class 0 the most frequent, and the clearest
    y = rng.choice(c, size=n, p=prior / prior.sum())
    z = np.linspace(1.5, 0.5, c)[y, None] * np.eye(c)[y] + rng.normal(0, 1, (n, c))
    p = np.exp(z)
    return y, p / p.sum(axis=1, keepdims=True)


def _regression(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(3.0, 2.0, size=n)
    return y, y + rng.normal(0, 0.7, size=n)


def _weights(n, seed=1):
    return np.random.default_rng(seed).uniform(0.1, 3.0, size=n)


def _sk_binary_brier(y, p, sample_weight=None):
    return skm.brier_score_loss(y, p[:, 1], sample_weight=sample_weight)


def _sk_multiclass_brier(y, p, sample_weight=None):
    labels = np.arange(p.shape[1])
    return skm.brier_score_loss(y, p, labels=labels, sample_weight=sample_weight)


def _labels(p):
    return p.argmax(axis=1)


CLASSIFICATION_REFERENCE = {
    "log_loss": lambda y, p, w, task: skm.log_loss(y, p, sample_weight=w),
    "roc_auc": lambda y, p, w, task: (
        skm.roc_auc_score(y, p[:, 1], sample_weight=w)
        if task == "binary"
        else skm.roc_auc_score(y, p, multi_class="ovr", sample_weight=w)
    ),
    "brier_score": lambda y, p, w, task: (
        _sk_binary_brier(y, p, w) if task == "binary" else _sk_multiclass_brier(y, p, w)
    ),
    "accuracy": lambda y, p, w, task: skm.accuracy_score(y, _labels(p), sample_weight=w),
    "balanced_accuracy": lambda y, p, w, task: skm.balanced_accuracy_score(
        y, _labels(p), sample_weight=w
    ),
    "f1_macro": lambda y, p, w, task: skm.f1_score(y, _labels(p), average="macro", sample_weight=w),
    "f1_micro": lambda y, p, w, task: skm.f1_score(y, _labels(p), average="micro", sample_weight=w),
    "f1_weighted": lambda y, p, w, task: skm.f1_score(
        y, _labels(p), average="weighted", sample_weight=w
    ),
    "matthews_corrcoef": lambda y, p, w, task: skm.matthews_corrcoef(
        y, _labels(p), sample_weight=w
    ),
}

REGRESSION_REFERENCE = {
    "rmse": lambda y, p, w: np.sqrt(skm.mean_squared_error(y, p, sample_weight=w)),
    "mse": lambda y, p, w: skm.mean_squared_error(y, p, sample_weight=w),
    "mae": lambda y, p, w: skm.mean_absolute_error(y, p, sample_weight=w),
    "r2": lambda y, p, w: skm.r2_score(y, p, sample_weight=w),
    "mape": lambda y, p, w: skm.mean_absolute_percentage_error(y, p, sample_weight=w),
    "explained_variance": lambda y, p, w: skm.explained_variance_score(y, p, sample_weight=w),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("name", sorted(CLASSIFICATION_REFERENCE))
def test_classification_metric_equals_scikit_learn(name, task, weighted):
    y, p = _classification(task)
    w = _weights(len(y)) if weighted else None
    got = get_metric(name)(y, p, task=task, sample_weight=w)
    assert_allclose(got, CLASSIFICATION_REFERENCE[name](y, p, w, task), rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_f1_equals_scikit_learn(weighted):
    y, p = _classification("binary")
    w = _weights(len(y)) if weighted else None
    got = get_metric("f1")(y, p, task="binary", sample_weight=w)
    assert_allclose(got, skm.f1_score(y, p[:, 1] >= 0.5, sample_weight=w), rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("roc_auc", lambda y, p, w: skm.roc_auc_score(y, p, average="macro", sample_weight=w)),
        ("accuracy", lambda y, p, w: skm.accuracy_score(y, p >= 0.5, sample_weight=w)),
        ("f1_macro", lambda y, p, w: skm.f1_score(y, p >= 0.5, average="macro", sample_weight=w)),
        ("f1_micro", lambda y, p, w: skm.f1_score(y, p >= 0.5, average="micro", sample_weight=w)),
        (
            "f1_weighted",
            lambda y, p, w: skm.f1_score(y, p >= 0.5, average="weighted", sample_weight=w),
        ),
        (  # the mean over labels, row by row: every (row, label) cell weighs the row's weight
            "log_loss",
            lambda y, p, w: skm.log_loss(
                y.ravel(), p.ravel(), sample_weight=None if w is None else np.repeat(w, y.shape[1])
            ),
        ),
    ],
)
def test_multilabel_metric_equals_scikit_learn(name, reference, weighted):
    y, p = _classification("multilabel")
    w = _weights(len(y)) if weighted else None
    got = get_metric(name)(y, p, task="multilabel", sample_weight=w)
    assert_allclose(got, reference(y, p, w), rtol=1e-12)


LABEL_AVERAGES = {"f1_macro": "macro", "f1_micro": "micro", "f1_weighted": "weighted"}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fixture", ["noisy", "tied"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_fixtures_give_every_label_metric_a_value_that_can_be_wrong(task, fixture, seed):
    """On predictions where a label metric is 1.0, or two averages agree, a metric that
    returns 1.0 or the other average passes; these fixtures rule both out (scikit-learn)."""
    y, p = _classification(task, seed=seed) if fixture == "noisy" else _tied(task, 150, seed)
    labels = (p >= 0.5).astype(int) if task == "multilabel" else p.argmax(axis=1)
    w = _weights(len(y), seed + 10)
    scores = {
        name: [skm.f1_score(y, labels, average=a, sample_weight=sw) for sw in (None, w)]
        for name, a in LABEL_AVERAGES.items()
    }
    scores["accuracy"] = [skm.accuracy_score(y, labels, sample_weight=sw) for sw in (None, w)]
    if task != "multilabel":
        scores["balanced_accuracy"] = [
            skm.balanced_accuracy_score(y, labels, sample_weight=sw) for sw in (None, w)
        ]
        scores["matthews_corrcoef"] = [
            skm.matthews_corrcoef(y, labels, sample_weight=sw) for sw in (None, w)
        ]
    for name, (plain, weighted) in scores.items():
        assert 0.05 < plain < 0.95 and 0.05 < weighted < 0.95, (name, plain, weighted)
        assert abs(plain - weighted) > 1e-4, (name, plain, weighted)
    pairs = [("f1_macro", "f1_micro"), ("f1_macro", "f1_weighted"), ("f1_micro", "f1_weighted")]
    pairs += [("balanced_accuracy", "accuracy")] if task != "multilabel" else []
    for a, b in pairs:
        assert abs(scores[a][0] - scores[b][0]) > 1e-4, (a, b, scores[a][0])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(REGRESSION_REFERENCE))
def test_regression_metric_equals_scikit_learn(name, weighted):
    y, p = _regression()
    w = _weights(len(y)) if weighted else None
    got = get_metric(name)(y, p, task="regression", sample_weight=w)
    assert_allclose(got, REGRESSION_REFERENCE[name](y, p, w), rtol=1e-12)


def test_sample_weight_changes_the_score():
    y, p = _classification("multiclass")
    metric = get_metric("log_loss")
    assert metric(y, p, task="multiclass") != metric(
        y, p, task="multiclass", sample_weight=_weights(len(y))
    )


def test_log_loss_with_a_class_absent_from_y():
    y = np.array([0, 1, 0, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.6, 0.2]])
    got = get_metric("log_loss")(y, p, task="multiclass")
    assert_allclose(got, skm.log_loss(y, p, labels=[0, 1, 2]))


def test_log_loss_of_a_zero_probability_is_finite():
    y = np.array([0, 1])
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert np.isfinite(get_metric("log_loss")(y, p, task="binary"))


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("neg_log_loss", "log_loss"),
        ("neg_brier_score", "brier_score"),
        ("brier_score_loss", "brier_score"),
        ("neg_root_mean_squared_error", "rmse"),
        ("neg_mean_squared_error", "mse"),
        ("neg_mean_absolute_error", "mae"),
        ("neg_mean_absolute_percentage_error", "mape"),
        ("roc_auc_ovr", "roc_auc"),
        ("neg_rmse", "rmse"),
        ("accuracy", "accuracy"),
    ],
)
def test_get_metric_aliases(alias, name):
    assert get_metric(alias).name == name


def test_neg_alias_reports_the_natural_value():
    y, p = _classification("multiclass")
    a = get_metric("neg_log_loss")(y, p, task="multiclass")
    assert a == get_metric("log_loss")(y, p, task="multiclass") > 0


@pytest.mark.parametrize(
    ("name", "greater"),
    [
        ("log_loss", False),
        ("brier_score", False),
        ("rmse", False),
        ("mse", False),
        ("mae", False),
        ("mape", False),
        ("accuracy", True),
        ("roc_auc", True),
        ("f1_macro", True),
        ("r2", True),
        ("matthews_corrcoef", True),
    ],
)
def test_metric_direction(name, greater):
    metric = get_metric(name)
    assert metric.greater_is_better is greater
    assert metric.direction == ("higher is better" if greater else "lower is better")
    assert metric.better(0.9, 0.1) is greater
    assert metric.better(0.1, 0.9) is not greater
    assert metric.better(0.5, 0.5) is False


@pytest.mark.parametrize(
    ("name", "task", "y", "p"),
    [
        ("rmse", "binary", *_classification("binary", n=10)),
        ("r2", "multiclass", *_classification("multiclass", n=10)),
        ("log_loss", "regression", *_regression(n=10)),
        ("accuracy", "regression", *_regression(n=10)),
        ("f1", "multiclass", *_classification("multiclass", n=10)),
        ("matthews_corrcoef", "multilabel", *_classification("multilabel", n=10)),
        ("balanced_accuracy", "multilabel", *_classification("multilabel", n=10)),
    ],
)
def test_metric_on_wrong_task_is_config_error(name, task, y, p):
    with pytest.raises(ConfigError, match=rf"metric '{name}' does not apply to a {task} task"):
        get_metric(name)(y, p, task=task)


def test_metric_on_wrong_task_lists_the_metrics_that_apply():
    y, p = _regression(n=10)
    with pytest.raises(ConfigError, match=r"use one of \['explained_variance', 'mae', .*'rmse'\]"):
        get_metric("accuracy")(y, p, task="regression")


@pytest.mark.parametrize("name", ["logloss", "neg_accuracyy", "auc", ""])
def test_unknown_metric_lists_available_names(name):
    with pytest.raises(ConfigError, match=rf"unknown metric '{name}'\..*'accuracy', .*'rmse'"):
        get_metric(name)


def test_available_metrics_all_resolve():
    names = available_metrics()
    assert names == sorted(names)
    assert {"log_loss", "roc_auc", "accuracy", "rmse", "mae", "r2"} <= set(names)
    assert all(get_metric(n).name == n for n in names)


@pytest.mark.parametrize(
    ("task", "primary"),
    [
        ("binary", "log_loss"),
        ("multiclass", "log_loss"),
        ("multilabel", "log_loss"),
        ("regression", "rmse"),
    ],
)
def test_default_metrics_apply_to_their_task(task, primary):
    names = default_metrics(task)
    assert names[0] == primary
    assert all(task in get_metric(n).tasks for n in names)


# Shared computation: every prepared metric equals scikit-learn on all rows, each fold and
# each resample, over several seeds, with tied scores and with sample weights.


def _sk(name, task, y, p, w):
    """The metric on the given rows, straight from scikit-learn."""
    if task == "regression":
        return REGRESSION_REFERENCE[name](y, p, w)
    labels = np.arange(p.shape[1])
    if name == "log_loss":
        if task == "multilabel":
            ww = None if w is None else np.repeat(w, y.shape[1])
            return skm.log_loss(y.ravel(), p.ravel(), labels=[0, 1], sample_weight=ww)
        return skm.log_loss(y, p, labels=labels, sample_weight=w)
    if name == "roc_auc":
        if task == "binary":
            return skm.roc_auc_score(y, p[:, 1], sample_weight=w)
        if task == "multilabel":
            return skm.roc_auc_score(y, p, average="macro", sample_weight=w)
        return skm.roc_auc_score(y, p, multi_class="ovr", labels=labels, sample_weight=w)
    if name == "brier_score":
        if task == "binary":
            return skm.brier_score_loss(y, p[:, 1], sample_weight=w, pos_label=1)
        if task == "multilabel":  # the sum over labels of each label's Brier score
            return sum(
                skm.brier_score_loss(y[:, j], p[:, j], sample_weight=w, pos_label=1) for j in labels
            )
        return skm.brier_score_loss(y, p, labels=labels, sample_weight=w)
    predicted = (p >= 0.5).astype(int) if task == "multilabel" else p.argmax(axis=1)
    if name == "accuracy":
        return skm.accuracy_score(y, predicted, sample_weight=w)
    if name in LABEL_AVERAGES:
        return skm.f1_score(y, predicted, average=LABEL_AVERAGES[name], sample_weight=w)
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, predicted, sample_weight=w)
    if name == "matthews_corrcoef":
        return skm.matthews_corrcoef(y, predicted, sample_weight=w)
    raise AssertionError(name)


def _tied(task, n, seed):
    """Targets and predictions drawn from a few distinct rows: many exactly tied scores
    (and, like :func:`_classification`, label metrics well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        y = rng.normal(3.0, 2.0, size=n)
        return y, np.round(y + rng.normal(0, 0.7, size=n), 1)
    if task == "multilabel":  # prevalences .2 .. .7; a * y + (1 - a) * U, a = .4 .. .2
        y = (rng.uniform(size=(n, 3)) < np.linspace(0.2, 0.7, 3)).astype(int)
        a = np.linspace(0.4, 0.2, 3)
        p = np.clip(a * y + (1 - a) * rng.uniform(size=y.shape), 0.01, 0.99)
        return y, np.round(p, 1)
    c = 2 if task == "binary" else 4
    prior = np.linspace(3, 1, c)
    y = rng.choice(c, size=n, p=prior / prior.sum())
    # 2 rows per class, row k leaning to class k % c; a row of y's class 70 % of the time
    pool = rng.dirichlet(np.ones(c), size=2 * c) + np.eye(c)[np.arange(2 * c) % c]
    pool /= pool.sum(axis=1, keepdims=True)
    leaning = np.where(rng.uniform(size=n) < 0.7, y, rng.integers(0, c, size=n))
    return y, pool[leaning + c * rng.integers(0, 2, size=n)]


def _fold_rows(folds, k):
    return np.flatnonzero(folds == k)


_CLASSIFICATION = ["log_loss", "roc_auc", "brier_score", "accuracy", "f1_macro"]
SHARED = [
    *[(m, t) for m in _CLASSIFICATION for t in ["binary", "multiclass", "multilabel"]],
    ("matthews_corrcoef", "multiclass"),
    *[("f1_micro", t) for t in ["multiclass", "multilabel"]],
    *[("f1_weighted", t) for t in ["multiclass", "multilabel"]],
    *[("balanced_accuracy", t) for t in ["binary", "multiclass"]],
    *[(m, "regression") for m in ["rmse", "mse", "mae", "mape", "r2"]],
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("name", "task"), SHARED)
def test_prepared_metric_equals_scikit_learn_on_rows_folds_and_resamples(
    name, task, seed, weighted, ties
):
    n = 150
    if ties:
        y, p = _tied(task, n, seed)
    else:
        y, p = _regression(n, seed) if task == "regression" else _classification(task, n, 3, seed)
    w = _weights(n, seed + 10) if weighted else None
    folds = np.random.default_rng(seed + 30).integers(0, 3, n)
    idx = np.random.default_rng(seed + 20).integers(0, n, size=(4, n))
    prepared = get_metric(name).prepare(y, p, task=task)

    assert_allclose(prepared.score(w), _sk(name, task, y, p, w), rtol=1e-10)
    expected = [
        _sk(name, task, y[r], p[r], None if w is None else w[r])
        for r in (_fold_rows(folds, k) for k in range(3))
    ]
    assert_allclose(prepared.fold_scores(folds, 3, w), expected, rtol=1e-10)
    expected = [_sk(name, task, y[r], p[r], None if w is None else w[r]) for r in idx]
    assert_allclose(prepared.resample_scores(idx, w), expected, rtol=1e-10)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_roc_auc_of_a_one_class_fold_is_nan_with_scikit_learns_warning(task):
    y, p = _classification(task, n=90, seed=4)
    folds = np.arange(90) % 3
    if task == "multilabel":
        y[folds == 0, 1] = 1  # label 1 has no negative in fold 0
    else:
        y[folds == 0] = 0  # fold 0 holds class 0 only
    with pytest.warns(UndefinedMetricWarning, match="Only one class is present in y_true"):
        expected = _sk("roc_auc", task, y[folds == 0], p[folds == 0], None)
    with pytest.warns(UndefinedMetricWarning, match="Only one class is present in y_true"):
        got = get_metric("roc_auc").prepare(y, p, task=task).fold_scores(folds, 3)
    assert np.isnan(expected) and np.isnan(got[0])
    assert_allclose(
        got[1:], [_sk("roc_auc", task, y[folds == k], p[folds == k], None) for k in (1, 2)]
    )


@pytest.mark.parametrize("name", ["log_loss", "brier_score", "accuracy", "f1_macro"])
def test_one_class_fold_scores_equal_scikit_learn(name):
    y, p = _classification("multiclass", n=90, seed=5)
    folds = np.arange(90) % 3
    y[folds == 0] = 2
    got = get_metric(name).prepare(y, p, task="multiclass").fold_scores(folds, 3)
    expected = [_sk(name, "multiclass", y[folds == k], p[folds == k], None) for k in range(3)]
    assert_allclose(got, expected, rtol=1e-10)


def test_roc_auc_resample_with_one_class_is_nan_without_warning():
    y = np.array([0, 1, 0, 1, 1])
    p = np.column_stack([1 - np.linspace(0.1, 0.9, 5), np.linspace(0.1, 0.9, 5)])
    idx = np.array([[0, 2, 0, 2, 0], [0, 1, 2, 3, 4]])
    got = get_metric("roc_auc").prepare(y, p, task="binary").resample_scores(idx)
    assert np.isnan(got[0])
    assert got[1] == pytest.approx(skm.roc_auc_score(y, p[:, 1]), rel=1e-12)


@pytest.mark.parametrize(
    ("name", "task", "data"),
    [
        ("log_loss", "multiclass", _classification("multiclass")),
        ("log_loss", "multilabel", _classification("multilabel")),
        ("brier_score", "binary", _classification("binary")),
        ("accuracy", "multilabel", _classification("multilabel")),
        ("rmse", "regression", _regression()),
        ("mape", "regression", _regression()),
    ],
)
def test_per_row_values_aggregate_to_the_score(name, task, data):
    y, p = data
    metric, w = get_metric(name), _weights(len(y))
    values = metric.per_row(y, p, task=task)
    assert metric.decomposable and values.shape == (len(y),)
    assert_allclose(metric.aggregate(values, w), metric(y, p, task=task, sample_weight=w))
    assert_allclose(metric.aggregate(values), _sk(name, task, y, p, None), rtol=1e-10)


@pytest.mark.parametrize("name", ["roc_auc", "f1_macro", "r2"])
def test_per_row_of_a_non_decomposable_metric_is_refused(name):
    metric = get_metric(name)
    task = "regression" if name == "r2" else "multiclass"
    y, p = _regression(n=10) if name == "r2" else _classification("multiclass", n=10)
    assert not metric.decomposable
    with pytest.raises(TypeError, match=rf"metric '{name}' is not a mean of per-row values"):
        metric.per_row(y, p, task=task)


def test_log_loss_of_float32_predictions_is_computed_in_float64():
    y, p = _classification("multiclass", seed=6)
    got = get_metric("log_loss")(y, p.astype(np.float32), task="multiclass")
    p64 = p.astype(np.float32).astype(np.float64)
    expected = skm.log_loss(y, p64 / p64.sum(axis=1, keepdims=True), labels=[0, 1, 2])
    assert_allclose(got, expected, rtol=1e-10)
