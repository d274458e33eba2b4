"""NNLSClassifier / NNLSRegressor: weights equal scipy's nnls on the documented matrix."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls
from sklearn.base import is_classifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from stacking.meta._combiners import LAYOUT_REFUSED_CHECKS
from stacking.meta._nnls import NNLSClassifier, NNLSRegressor


def _probabilities(rng, n_rows, n_models, n_classes):
    p = rng.dirichlet(np.ones(n_classes), size=(n_rows, n_models))
    return p.reshape(n_rows, n_models * n_classes)


def _stacked_design(X, y, n_models, n_classes):
    """Built cell by cell: row (i, k) of the design holds X[i, m * K + k] for model m."""
    A = np.zeros((len(X) * n_classes, n_models))
    b = np.zeros(len(X) * n_classes)
    for i in range(len(X)):
        for k in range(n_classes):
            b[i * n_classes + k] = float(y[i] == k)
            for m in range(n_models):
                A[i * n_classes + k, m] = X[i, m * n_classes + k]
    return A, b


def test_nnls_classifier_binary_matches_scipy_nnls():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=40)
    X = np.clip(y[:, None] * 0.5 + rng.uniform(0, 0.5, size=(40, 3)), 0, 1)
    clf = NNLSClassifier().fit(X, y)
    coef, _ = nnls(X, y.astype(float))
    assert_allclose(clf.coef_, coef)
    assert_allclose(clf.weights_, coef / coef.sum())
    assert clf.weights_.sum() == pytest.approx(1.0)


def test_nnls_classifier_multiclass_matches_scipy_nnls_on_stacked_cells():
    rng = np.random.default_rng(1)
    X, y = _probabilities(rng, 30, 4, 3), rng.integers(0, 3, size=30)
    clf = NNLSClassifier().fit(X, y)
    A, b = _stacked_design(X, y, n_models=4, n_classes=3)
    coef, _ = nnls(A, b)
    assert_allclose(clf.coef_, coef)
    assert_allclose(clf.weights_, coef / coef.sum())


def test_nnls_classifier_sample_weight_scales_rows_by_sqrt():
    rng = np.random.default_rng(2)
    X, y = _probabilities(rng, 25, 3, 3), rng.integers(0, 3, size=25)
    w = rng.uniform(0.1, 5.0, size=25)
    A, b = _stacked_design(X, y, n_models=3, n_classes=3)
    root = np.sqrt(np.repeat(w, 3))
    coef, _ = nnls(A * root[:, None], b * root)
    clf = NNLSClassifier().fit(X, y, sample_weight=w)
    assert_allclose(clf.coef_, coef)
    assert not np.allclose(clf.coef_, NNLSClassifier().fit(X, y).coef_)


def test_nnls_classifier_predict_proba_is_weighted_blocks_renormalised():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=60)
    good = np.eye(3)[y] * 0.8 + 0.2 / 3  # a confident, right model
    noise = rng.dirichlet(np.ones(3), size=60)
    X = np.hstack([noise, good])
    clf = NNLSClassifier().fit(X, y)
    assert clf.weights_[1] > 0.9 > clf.weights_[0]
    expected = clf.weights_[0] * noise + clf.weights_[1] * good
    assert_allclose(clf.predict_proba(X), expected / expected.sum(axis=1, keepdims=True))
    assert_array_equal(clf.predict(X), y)


def test_nnls_classifier_all_zero_solution_falls_back_to_equal_weights():
    # P(class 1) is 0 wherever y is 1, so no positive weight reduces the residual.
    X = np.array([[0.0, 0.0], [0.9, 0.8], [0.7, 0.6]])
    clf = NNLSClassifier().fit(X, [1, 0, 0])
    assert_allclose(clf.coef_, [0.0, 0.0])
    assert_allclose(clf.weights_, [0.5, 0.5])


def test_nnls_classifier_multilabel_matches_scipy_nnls():
    rng = np.random.default_rng(4)
    Y = rng.integers(0, 2, size=(20, 2))
    X = np.clip(np.hstack([Y * 0.7 + 0.1, rng.uniform(size=(20, 2))]), 0, 1)
    clf = NNLSClassifier().fit(X, Y)
    A = np.column_stack([X[:, :2].reshape(-1), X[:, 2:].reshape(-1)])
    coef, _ = nnls(A, Y.reshape(-1).astype(float))
    assert_allclose(clf.coef_, coef)
    assert clf.predict_proba(X).shape == (20, 2)
    assert_array_equal(clf.predict(X), Y)


def test_nnls_regressor_matches_scipy_nnls_and_predicts_weighted_sum():
    rng = np.random.default_rng(5)
    y = rng.normal(size=50)
    X = np.column_stack([y + rng.normal(0, 0.1, 50), y + rng.normal(0, 1.0, 50), -y])
    w = rng.uniform(0.5, 2.0, size=50)
    coef, _ = nnls(X * np.sqrt(w)[:, None], y * np.sqrt(w))
    reg = NNLSRegressor().fit(X, y, sample_weight=w)
    assert_allclose(reg.coef_, coef)
    assert reg.coef_[2] == 0.0  # the anti-correlated model gets no weight
    assert_allclose(reg.weights_, coef / coef.sum())
    assert_allclose(reg.predict(X), X @ (coef / coef.sum()))


def test_nnls_regressor_without_normalize_predicts_with_coef():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([2.0, 3.0, 5.0])  # exactly 2 * model 0 + 3 * model 1
    reg = NNLSRegressor(normalize=False).fit(X, y)
    assert_allclose(reg.coef_, [2.0, 3.0])
    assert_allclose(reg.weights_, [2.0, 3.0])
    assert_allclose(reg.predict(X), y)
    assert_allclose(NNLSRegressor().fit(X, y).weights_, [0.4, 0.6])


def test_nnls_regressor_all_zero_solution_falls_back_to_equal_weights():
    reg = NNLSRegressor().fit([[1.0, 2.0], [2.0, 1.0]], [-1.0, -2.0])
    assert_allclose(reg.coef_, [0.0, 0.0])
    assert_allclose(reg.weights_, [0.5, 0.5])


def _expected_failed_checks(estimator):
    return dict(LAYOUT_REFUSED_CHECKS) if is_classifier(estimator) else {}


@parametrize_with_checks(
    [NNLSClassifier(), NNLSClassifier(normalize=False), NNLSRegressor()],
    expected_failed_checks=_expected_failed_checks,
    xfail_strict=True,
)
def test_nnls_sklearn_conformance(estimator, check):
    check(estimator)
