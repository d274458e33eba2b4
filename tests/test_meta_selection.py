"""EnsembleSelection*: hand-computed greedy paths, sorted init, bagging, errors, conformance."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import is_classifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from stacking.errors import ConfigError
from stacking.meta._combiners import LAYOUT_REFUSED_CHECKS
from stacking.meta._selection import EnsembleSelectionClassifier, EnsembleSelectionRegressor

# Regression library: y = 1..6 and four models y + error, errors:
#   A = [.5, .5, .5, .5, .5, .5]      mse .25
#   B = [-1, -1, -1, 0, 0, 0]         mse .5
#   C = [0, 0, 0, -1, -1, -1]         mse .5
#   D = [.6, .6, .6, .6, .6, .6]      mse .36
Y_REG = np.arange(1.0, 7.0)
ERRORS = np.array([[0.5] * 6, [-1, -1, -1, 0, 0, 0], [0, 0, 0, -1, -1, -1], [0.6] * 6]).T
X_REG = Y_REG[:, None] + ERRORS


def test_selection_regressor_reproduces_hand_computed_greedy_path():
    # step 1 (init): best single model is A (mse .25, rmse .5).
    # step 2: mean error of A + A = .5 (mse .25); A + B = [-.25]*3 + [.25]*3 (mse .0625);
    #         A + C the same .0625; A + D = .55 (mse .3025) -> B (tie with C: lower index).
    # step 3: running error sum [-.5]*3 + [.5]*3, divided by 3: +A [0]*3 + [1/3]*3 (mse
    #         1/18); +B [-.5]*3 + [1/6]*3 (.139); +C [-1/6]*6 (1/36); +D (.068) -> C.
    # step 4: error sum [-.5]*6, divided by 4: +A [0]*6 (mse 0); +D [.025]*6 -> A.
    reg = EnsembleSelectionRegressor(n_iter=3).fit(X_REG, Y_REG)
    assert reg.selection_path_ == [0, 1, 2, 0]
    assert_allclose(reg.scores_path_, [0.5, 0.25, 1 / 6, 0.0], atol=1e-12)
    assert_allclose(reg.weights_, [0.5, 0.25, 0.25, 0.0])
    assert_allclose(reg.predict(X_REG), Y_REG)


def test_selection_regressor_sorted_initialisation_starts_from_best_singles():
    # init: the two best singles, A (mse .25) then D (.36): error .55, rmse .55.
    # step 1: error sum [1.1]*6 over 3: +A .5333 (mse .284); +B [.1/3]*3 + [1.1/3]*3
    #         (mse 1.22/18 = .0678); +C the same; +D .5667 (.321) -> B (tie: lower index).
    # step 2: error sum [.1]*3 + [1.1]*3 over 4: +A (.091); +B (.063); +C [.025]*6
    #         (.000625); +D (.106) -> C.
    reg = EnsembleSelectionRegressor(n_iter=2, n_init=2).fit(X_REG, Y_REG)
    assert reg.selection_path_ == [0, 3, 1, 2]
    assert_allclose(reg.scores_path_, [0.5, 0.55, np.sqrt(1.22 / 18), 0.025], atol=1e-9)
    assert_allclose(reg.weights_, [0.25, 0.25, 0.25, 0.25])


def test_selection_classifier_reproduces_hand_computed_greedy_path():
    # P("pos") of three models on rows labelled pos, pos, neg, neg; the binary Brier score
    # is the mean of (p - y)^2:  A = [.7, .7, .3, .3] .09;  B = [1, .5, 0, .5] .125;
    # C = [.5, 1, .5, 0] .125.
    # step 1 (init): A (.09).
    # step 2: A + A .09; (A + B) / 2 = [.85, .6, .15, .4] .09125; A + C the same -> A.
    # step 3: (2A + A) / 3 .09; (2A + B) / 3 = [.8, .633, .2, .367] .08722; (2A + C) / 3
    #         the same -> B (lower index).
    # step 4: (3A + B) / 4 .08656; (2A + 2B) / 4 .09125; (2A + B + C) / 4 = [.725, .725,
    #         .275, .275] .075625 -> C.
    X = np.array([[0.7, 1.0, 0.5], [0.7, 0.5, 1.0], [0.3, 0.0, 0.5], [0.3, 0.5, 0.0]])
    y = np.array(["pos", "pos", "neg", "neg"])
    clf = EnsembleSelectionClassifier(n_iter=3, scoring="brier_score").fit(X, y)
    assert clf.selection_path_ == [0, 0, 1, 2]
    assert_allclose(clf.scores_path_, [0.09, 0.09, 0.087222, 0.075625], atol=1e-6)
    assert_allclose(clf.weights_, [0.5, 0.25, 0.25])
    assert_allclose(clf.predict_proba(X)[:, 1], [0.725, 0.725, 0.275, 0.275])
    assert_array_equal(clf.predict(X), y)


def _library(seed, n_rows=60, n_models=8, n_classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n_rows)
    quality = rng.uniform(0.0, 0.6, size=n_models)
    truth = np.eye(n_classes)[y]
    blocks = [q * truth + (1 - q) * rng.dirichlet(np.ones(n_classes), n_rows) for q in quality]
    return np.hstack(blocks), y


def test_selection_classifier_bagging_is_seeded_and_averages_bag_weights():
    X, y = _library(0)
    params = dict(n_iter=6, n_bags=4, bag_fraction=0.5, random_state=7)
    first = EnsembleSelectionClassifier(**params).fit(X, y)
    again = EnsembleSelectionClassifier(**params).fit(X, y)
    other = EnsembleSelectionClassifier(**{**params, "random_state": 8}).fit(X, y)
    assert_array_equal(first.weights_, again.weights_)
    assert first.selection_path_ == again.selection_path_
    assert any(not np.array_equal(a, b) for a, b in zip(first.bags_, other.bags_, strict=True))
    assert [bag.size for bag in first.bags_] == [4] * 4
    per_bag = []
    for bag, path in zip(first.bags_, first.selection_path_, strict=True):
        assert set(path) <= set(bag.tolist()) and len(path) == 7
        per_bag.append(np.bincount(path, minlength=8) / 7)
    assert_allclose(first.weights_, np.mean(per_bag, axis=0))
    assert first.weights_.sum() == pytest.approx(1.0)


def test_selection_sorted_init_is_reproducible_and_uses_best_singles():
    X, y = _library(1)
    clf = EnsembleSelectionClassifier(n_iter=4, n_init=3).fit(X, y)
    singles = [
        EnsembleSelectionClassifier(n_iter=0).fit(X[:, 3 * m : 3 * m + 3], y).scores_path_[0]
        for m in range(8)
    ]
    assert clf.selection_path_[:3] == np.argsort(singles, kind="stable")[:3].tolist()
    assert (
        clf.selection_path_
        == EnsembleSelectionClassifier(n_iter=4, n_init=3).fit(X, y).selection_path_
    )


def test_selection_default_scoring_is_log_loss_and_rmse():
    X, y = _library(2)
    default = EnsembleSelectionClassifier(n_iter=5).fit(X, y)
    assert default.selection_path_ == (
        EnsembleSelectionClassifier(n_iter=5, scoring="neg_log_loss").fit(X, y).selection_path_
    )
    assert default.selection_path_ != (
        EnsembleSelectionClassifier(n_iter=5, scoring="accuracy").fit(X, y).selection_path_
    )
    reg = EnsembleSelectionRegressor(n_iter=3).fit(X_REG, Y_REG)
    assert (
        reg.selection_path_
        == EnsembleSelectionRegressor(n_iter=3, scoring="rmse").fit(X_REG, Y_REG).selection_path_
    )


def test_selection_zero_sample_weight_equals_dropping_rows():
    X, y = _library(3)
    w = np.ones(len(y))
    w[::3] = 0.0
    weighted = EnsembleSelectionClassifier(n_iter=8).fit(X, y, sample_weight=w)
    dropped = EnsembleSelectionClassifier(n_iter=8).fit(X[w > 0], y[w > 0])
    assert weighted.selection_path_ == dropped.selection_path_


def test_selection_classifier_multilabel():
    rng = np.random.default_rng(4)
    Y = rng.integers(0, 2, size=(30, 2))
    X = np.hstack([Y * 0.6 + 0.2, rng.uniform(size=(30, 2))])
    clf = EnsembleSelectionClassifier(n_iter=3).fit(X, Y)
    assert clf.selection_path_ == [0, 0, 0, 0]
    assert_array_equal(clf.predict(X), Y)


@pytest.mark.parametrize(
    ("estimator", "error", "match"),
    [
        (
            EnsembleSelectionRegressor(scoring="foo"),
            ConfigError,
            "unknown metric 'foo'.*Received: scoring='foo'",
        ),
        (
            EnsembleSelectionRegressor(scoring="log_loss"),
            ConfigError,
            "'log_loss' does not apply to a regression target. Received: scoring='log_loss'",
        ),
        (
            EnsembleSelectionRegressor(n_init=5),
            ConfigError,
            r"X has 4 feature\(s\), that is 4 base model\(s\).*Received: n_init=5",
        ),
        (EnsembleSelectionRegressor(bag_fraction=0.0), InvalidParameterError, "bag_fraction"),
        (EnsembleSelectionRegressor(n_iter=-1), InvalidParameterError, "n_iter"),
    ],
)
def test_selection_errors(estimator, error, match):
    with pytest.raises(error, match=match):
        estimator.fit(X_REG, Y_REG)


def test_selection_classifier_rejects_regression_metric():
    with pytest.raises(ConfigError, match="'rmse' does not apply to a binary target"):
        EnsembleSelectionClassifier(scoring="rmse").fit([[0.2], [0.7]], [0, 1])


def _expected_failed_checks(estimator):
    return dict(LAYOUT_REFUSED_CHECKS) if is_classifier(estimator) else {}


# n_iter is small to keep the suite fast: every step scores every model.
@parametrize_with_checks(
    [
        EnsembleSelectionClassifier(n_iter=5),
        EnsembleSelectionClassifier(n_iter=5, n_bags=3, random_state=0),
        EnsembleSelectionRegressor(n_iter=5),
        EnsembleSelectionRegressor(n_iter=5, n_init=2, n_bags=2, random_state=0),
    ],
    expected_failed_checks=_expected_failed_checks,
    xfail_strict=True,
)
def test_selection_sklearn_conformance(estimator, check):
    check(estimator)


def test_selection_scores_clipped_float64_blocks():
    # The scores are those of the blocks clipped to [0, 1] and computed in float64: values
    # out of range (round-off, a margin) and float32 input change nothing.
    X, y = _library(5, n_rows=30, n_models=4)
    X = 1.6 * X - 0.2  # every model has values above 1 and below 0
    reference = EnsembleSelectionClassifier(n_iter=4).fit(np.clip(X, 0.0, 1.0), y)
    assert EnsembleSelectionClassifier(n_iter=4).fit(X, y).scores_path_ == reference.scores_path_
    X32 = X.astype(np.float32)
    from32 = EnsembleSelectionClassifier(n_iter=4).fit(X32, y)
    exact = EnsembleSelectionClassifier(n_iter=4).fit(np.clip(X32.astype(np.float64), 0, 1), y)
    assert from32.scores_path_ == exact.scores_path_


def test_selection_classifier_reads_multilabel_targets():
    tags = EnsembleSelectionClassifier().__sklearn_tags__()
    assert tags.classifier_tags.multi_label is True
    assert tags.target_tags.multi_output is True


def test_selection_scores_blocks_of_classes_absent_from_y():
    # 3-column blocks, y without class 1 (a meta-level training fold): each single model's
    # score is scikit-learn's log loss over the three classes.
    X, _ = _library(6, n_rows=20, n_models=3)
    y = np.where(np.arange(20) % 2 == 0, 0, 2)
    clf = EnsembleSelectionClassifier(n_iter=0, columns_per_model=3).fit(X, y)
    singles = [log_loss(y, X[:, 3 * m : 3 * m + 3], labels=[0, 1, 2]) for m in range(3)]
    assert clf.selection_path_ == [int(np.argmin(singles))]
    assert clf.scores_path_[0] == pytest.approx(min(singles), rel=1e-11)


def test_selection_sorted_initialisation_keeps_tied_models_in_index_order():
    # 20 models, the odd ones off by 0.5 and the even ones by 1.0: ties within each group
    # keep index order (a stable sort), beyond the 16 elements numpy sorts by insertion.
    errors = np.where(np.arange(20) % 2 == 1, 0.5, 1.0)
    X = Y_REG[:, None] + errors[None, :]
    reg = EnsembleSelectionRegressor(n_iter=0, n_init=20).fit(X, Y_REG)
    assert reg.selection_path_ == list(range(1, 20, 2)) + list(range(0, 20, 2))


def test_selection_sorted_initialisation_of_a_greater_is_better_metric():
    # roc_auc: higher is better, so the n_init models of highest single AUC come first.
    X, y = _library(7, n_rows=40, n_models=6, n_classes=2)
    positive = X[:, 1::2]
    auc = [roc_auc_score(y, positive[:, m]) for m in range(6)]
    clf = EnsembleSelectionClassifier(n_iter=0, n_init=3, scoring="roc_auc", columns_per_model=2)
    clf.fit(X, y)
    assert clf.selection_path_ == np.argsort(-np.array(auc), kind="stable")[:3].tolist()
    assert_allclose(clf.scores_path_[0], max(auc), rtol=1e-11)


def test_selection_a_nan_score_loses_to_any_number():
    # Model 0's predictions score NaN (a metric undefined on them): it is never chosen,
    # neither first nor in the greedy steps.
    from stacking.meta._selection import _greedy_path
    from stacking.metrics import get_metric

    preds = np.array([[np.inf, 1.0, 2.0], [np.inf, 2.0, 2.5]])
    target = np.array([1.0, 2.0])

    def score(pred):
        return np.nan if np.isinf(pred).any() else float(np.sqrt(np.mean((pred - target) ** 2)))

    path, scores = _greedy_path(preds, np.arange(3), score, get_metric("rmse"), 2, 2)
    assert path == [1, 2, 1, 1]
    assert not np.isnan(scores).any()


def test_selection_regressor_keeps_its_scoring():
    assert EnsembleSelectionRegressor(scoring="mae").get_params()["scoring"] == "mae"
    X = np.column_stack([Y_REG + np.array([0, 0, 0, 0, 0, 3.0]), Y_REG + 0.6])  # mae .5 vs .6
    assert EnsembleSelectionRegressor(n_iter=0, scoring="mae").fit(X, Y_REG).selection_path_ == [0]
    assert EnsembleSelectionRegressor(n_iter=0).fit(X, Y_REG).selection_path_ == [1]


def test_selection_bags_are_drawn_without_replacement_from_random_state():
    X, y = _library(0)
    clf = EnsembleSelectionClassifier(n_iter=2, n_bags=3, bag_fraction=0.5, random_state=7)
    clf.fit(X, y)
    rng = np.random.RandomState(7)
    expected = [np.sort(rng.choice(8, size=4, replace=False)) for _ in range(3)]
    for bag, want in zip(clf.bags_, expected, strict=True):
        assert_array_equal(bag, want)
    assert clf.n_models_ == 8
    assert len(clf.scores_path_) == 3 and all(len(s) == 3 for s in clf.scores_path_)
