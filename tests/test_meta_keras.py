"""Tests for the Keras meta-learners: conformance, reproducibility, learned weights, errors."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.utils.estimator_checks import parametrize_with_checks

from stacking.meta._convex import ConvexCombinationClassifier, ConvexCombinationRegressor
from stacking.meta._keras import KerasMLPClassifier, KerasMLPRegressor

# Small epochs keep the suite fast: each fit costs ~0.3 s, mostly tracing one Keras step.
CONFORMANCE_ESTIMATORS = [
    KerasMLPClassifier(epochs=30, learning_rate=1e-2),
    KerasMLPRegressor(epochs=30, learning_rate=1e-2),
    ConvexCombinationClassifier(epochs=30),
    ConvexCombinationRegressor(epochs=30),
]

_SPLIT = (
    "early stopping holds out a random validation split, which differs between weighted "
    "and repeated rows, and Adam runs in float32; equivalence holds only approximately "
    "(see test_keras_mlp_integer_sample_weight_matches_repeated_rows)"
)
_LAYOUT = (
    "the check's X is no whole number of per-model probability blocks for its target "
    "(e.g. 20 features for 3 labels); that layout error is the contract"
)
EXPECTED_FAILED_CHECKS = {
    KerasMLPClassifier: {"check_sample_weight_equivalence_on_dense_data": _SPLIT},
    KerasMLPRegressor: {"check_sample_weight_equivalence_on_dense_data": _SPLIT},
    ConvexCombinationClassifier: {
        "check_dtype_object": _LAYOUT,
        "check_classifier_multioutput": _LAYOUT,
        "check_classifiers_multilabel_representation_invariance": _LAYOUT,
        "check_classifiers_multilabel_output_format_predict": _LAYOUT,
        "check_classifiers_multilabel_output_format_predict_proba": _LAYOUT,
        "check_classifiers_multilabel_output_format_decision_function": _LAYOUT,
    },
}


@parametrize_with_checks(
    CONFORMANCE_ESTIMATORS,
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS.get(type(est), {}),
    xfail_strict=True,
)
def test_meta_keras_sklearn_conformance(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------- helpers


def _noisy_binary(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features where the label is a noisy function of two columns (not separable)."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, 5)
    logit = 2.0 * X[:, 0] - 1.5 * X[:, 1]
    y = (rng.rand(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return X, y


def _mixture_binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two base models' P(class 1); y drawn from the mixture 0.7 * model0 + 0.3 * model1."""
    rng = np.random.RandomState(seed)
    p = rng.rand(n, 2)
    y = (rng.rand(n) < p @ [0.7, 0.3]).astype(int)
    return p, y


def _normalise(a: np.ndarray) -> np.ndarray:
    return a / a.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- MLP


@pytest.mark.parametrize("estimator_class", [KerasMLPClassifier, KerasMLPRegressor])
def test_keras_mlp_same_random_state_same_predictions(estimator_class):
    X, y = _noisy_binary(300)
    params = dict(hidden_units=(16, 8), dropout=0.2, batch_size=64, epochs=15, learning_rate=1e-2)
    method = "predict_proba" if estimator_class is KerasMLPClassifier else "predict"

    def fitted_output(seed):
        est = estimator_class(random_state=seed, **params).fit(X, y)
        return getattr(est, method)(X)

    first, second, other_seed = fitted_output(0), fitted_output(0), fitted_output(1)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other_seed)


def test_keras_mlp_early_stopping_stops_before_epochs():
    X, y = _noisy_binary(400)
    clf = KerasMLPClassifier(
        hidden_units=(64,), learning_rate=3e-2, epochs=200, patience=5, random_state=0
    ).fit(X, y)
    assert clf.patience < clf.n_iter_ < clf.epochs
    assert clf.loss_curve_.shape == (clf.n_iter_,)


def test_keras_mlp_keeps_the_best_epoch():
    X, y = _noisy_binary(400)
    clf = KerasMLPClassifier(
        learning_rate=5e-2,
        batch_size=32,
        epochs=60,
        patience=3,
        validation_fraction=0.0,
        random_state=0,
    ).fit(X, y)
    # Without a validation split the training loss is monitored: the weights kept are
    # those of the epoch `patience` epochs before the last, not the last epoch's.
    assert clf.n_iter_ < clf.epochs
    kept_loss = log_loss(y, clf.predict_proba(X))
    assert kept_loss == pytest.approx(clf.loss_curve_[clf.n_iter_ - 1 - clf.patience], rel=1e-6)
    assert kept_loss < clf.loss_curve_[-1]


def test_keras_mlp_integer_sample_weight_matches_repeated_rows():
    X, y = _noisy_binary(60)
    sw = np.random.RandomState(1).randint(0, 4, size=y.size)
    params = dict(
        epochs=20, patience=20, validation_fraction=0.0, learning_rate=1e-2, random_state=0
    )
    weighted = KerasMLPClassifier(**params).fit(X, y, sample_weight=sw)
    repeated = KerasMLPClassifier(**params).fit(np.repeat(X, sw, 0), np.repeat(y, sw))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), atol=1e-4)


def test_keras_mlp_zero_weight_rows_are_ignored():
    X, y = _noisy_binary(300)
    flipped = np.concatenate([y, 1 - y])  # every row again, with the wrong label
    sw = np.r_[np.ones(y.size), np.zeros(y.size)]
    clf = KerasMLPClassifier(learning_rate=1e-2, epochs=50, random_state=0)
    clf.fit(np.vstack([X, X]), flipped, sample_weight=sw)
    assert np.mean(clf.predict(X) == y) > 0.8


def test_keras_mlp_classifier_multilabel():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 4)
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0.5, X[:, 0] + X[:, 2] > 0]).astype(int)
    clf = KerasMLPClassifier(learning_rate=1e-2, epochs=60, random_state=0).fit(X, Y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (300, 3)
    assert np.all((clf.predict(X) == Y).mean(axis=0) > 0.9)


def test_keras_mlp_regressor_multioutput_and_string_classes():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 3)
    Y = np.column_stack([X @ [1.0, -2.0, 0.5], 100.0 + 10.0 * X[:, 0]])
    reg = KerasMLPRegressor(learning_rate=1e-2, epochs=100, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, Y) > 0.95

    labels = np.array(["cat", "dog", "eel"])[np.argmax(X, axis=1)]
    clf = KerasMLPClassifier(learning_rate=1e-2, epochs=60, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "eel"])
    assert np.mean(clf.predict(X) == labels) > 0.9


# ----------------------------------------------------------------------------- convex


def test_convex_classifier_recovers_mixture_weights():
    X, y = _mixture_binary(20_000)
    clf = ConvexCombinationClassifier(random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.weights_, [0.7, 0.3], atol=0.05)
    assert clf.weights_.shape == (2,)
    assert clf.weights_.sum() == pytest.approx(1.0)


def test_convex_classifier_good_model_dominates_noise_model():
    rng = np.random.RandomState(0)
    n, n_classes = 1000, 3
    y = rng.randint(n_classes, size=n)
    good = np.full((n, n_classes), 0.05)
    good[np.arange(n), y] = 0.9
    noise = rng.dirichlet(np.ones(n_classes), size=n)
    clf = ConvexCombinationClassifier(random_state=0).fit(np.hstack([noise, good]), y)
    assert clf.weights_[1] > 0.9
    assert np.mean(clf.predict(np.hstack([noise, good])) == y) == 1.0


def test_convex_classifier_per_class_weights():
    rng = np.random.RandomState(0)
    n = 1500
    y = rng.randint(3, size=n)
    # Model A is only informative about class 0, model B only about classes 1 and 2.
    a = rng.uniform(0.05, 0.5, size=(n, 3))
    a[:, 0] = np.where(y == 0, 0.9, 0.05)
    b = rng.uniform(0.05, 0.5, size=(n, 3))
    b[:, 1] = np.where(y == 1, 0.9, 0.05)
    b[:, 2] = np.where(y == 2, 0.9, 0.05)
    X = np.hstack([_normalise(a), _normalise(b)])

    per_class = ConvexCombinationClassifier(per_class=True, random_state=0).fit(X, y)
    shared = ConvexCombinationClassifier(random_state=0).fit(X, y)
    w = per_class.weights_
    assert w.shape == (2, 3)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    assert w[0, 0] > 0.5 and w[1, 1] > 0.5 and w[1, 2] > 0.5
    assert log_loss(y, per_class.predict_proba(X)) < log_loss(y, shared.predict_proba(X))


def test_convex_classifier_clips_out_of_range_probabilities():
    X, y = _mixture_binary(500)
    clf = ConvexCombinationClassifier(epochs=50, random_state=0).fit(X, y)
    proba = clf.predict_proba(X + np.array([1.5, -2.0]))  # model0 > 1, model1 < 0: clipped
    np.testing.assert_allclose(proba[:, 1], clf.weights_[0])


def test_convex_regressor_recovers_weights():
    rng = np.random.RandomState(0)
    truth = 3.0 + 2.0 * rng.randn(2000)
    X = truth[:, None] + rng.randn(2000, 3) * [0.5, 0.5, 2.0]  # three noisy base models
    y = X @ [0.6, 0.4, 0.0] + 0.05 * rng.randn(2000)
    reg = ConvexCombinationRegressor(random_state=0).fit(X, y)
    np.testing.assert_allclose(reg.weights_, [0.6, 0.4, 0.0], atol=0.03)
    np.testing.assert_allclose(reg.predict(X[:3]), X[:3] @ reg.weights_)


def test_convex_validation_split_is_seeded():
    X, y = _mixture_binary(2000)
    params = dict(validation_fraction=0.3, epochs=60)
    first = ConvexCombinationClassifier(random_state=3, **params).fit(X, y).weights_
    second = ConvexCombinationClassifier(random_state=3, **params).fit(X, y).weights_
    np.testing.assert_array_equal(first, second)


# ----------------------------------------------------------------------------- errors

_X_BINARY, _Y_BINARY = _mixture_binary(40)


@pytest.mark.parametrize(
    ("estimator", "match"),
    [
        (KerasMLPClassifier(hidden_units=(0,)), r"Received: hidden_units=\(0,\)"),
        (KerasMLPClassifier(hidden_units=(32, 2.5)), r"Received: hidden_units=\(32, 2.5\)"),
        (KerasMLPRegressor(hidden_units=32), r"'hidden_units' parameter .* Got 32"),
        (KerasMLPRegressor(hidden_units=[[8, 4]]), r"Received: hidden_units=\[\[8, 4\]\]"),
        (KerasMLPClassifier(dropout=1.0), r"'dropout' parameter .* Got 1.0"),
        (KerasMLPClassifier(l2=-0.1), r"'l2' parameter .* Got -0.1"),
        (KerasMLPRegressor(learning_rate=0.0), r"'learning_rate' parameter .* Got 0.0"),
        (KerasMLPClassifier(epochs=0), r"'epochs' parameter .* Got 0"),
        (KerasMLPClassifier(batch_size=0), r"'batch_size' parameter .* Got 0"),
        (KerasMLPRegressor(validation_fraction=1.0), r"'validation_fraction' .* Got 1.0"),
        (KerasMLPClassifier(patience=0), r"'patience' parameter .* Got 0"),
        (KerasMLPClassifier(random_state="seed"), r"'random_state' parameter .* Got 'seed'"),
        (ConvexCombinationClassifier(per_class="yes"), r"'per_class' parameter .* Got 'yes'"),
        (ConvexCombinationClassifier(columns_per_model=0), r"'columns_per_model' .* Got 0"),
        (ConvexCombinationClassifier(columns_per_model=3), r"Received: columns_per_model=3"),
        (ConvexCombinationRegressor(epochs=-1), r"'epochs' parameter .* Got -1"),
    ],
    ids=lambda p: repr(p) if isinstance(p, str) else None,
)
def test_meta_keras_bad_params_raise(estimator, match):
    with pytest.raises(ValueError, match=match):
        estimator.fit(_X_BINARY, _Y_BINARY)


def test_convex_classifier_rejects_partial_blocks():
    y = np.arange(20) % 3
    X = np.random.RandomState(0).rand(20, 5)  # neither 3- nor 2-column blocks
    with pytest.raises(ValueError, match="not a whole number of base-model blocks"):
        ConvexCombinationClassifier().fit(X, y)


def test_keras_mlp_classifier_rejects_one_weighted_class():
    with pytest.raises(ValueError, match=r"at least 2 classes .* Received: rows of one class"):
        KerasMLPClassifier().fit(_X_BINARY, _Y_BINARY, sample_weight=_Y_BINARY)


def test_keras_mlp_validation_split_needs_rows():
    with pytest.raises(ValueError, match=r"validation_fraction=0.5 of 1 sample"):
        KerasMLPRegressor(validation_fraction=0.5).fit([[1.0, 2.0]], [3.0])


# ----------------------------------------------------------------------------- serving


def test_import_does_not_import_tensorflow():
    code = (
        "import sys, stacking.meta._keras, stacking.meta._convex; "
        "assert not {'keras', 'tensorflow'} & set(sys.modules), 'TensorFlow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fitted_estimators_predict_without_tensorflow(tmp_path):
    X, y = _mixture_binary(200)
    fitted = [
        KerasMLPClassifier(epochs=5, random_state=0).fit(X, y),
        KerasMLPRegressor(epochs=5, random_state=0).fit(X, X[:, 0]),
        ConvexCombinationClassifier(epochs=5).fit(X, y),
        ConvexCombinationRegressor(epochs=5).fit(X, X[:, 0]),
    ]
    expected = [est.predict(X) for est in fitted]
    path = tmp_path / "fitted.pkl"
    path.write_bytes(pickle.dumps((fitted, X)))
    code = (
        "import sys, pickle, numpy as np; "
        "sys.modules.update(keras=None, tensorflow=None); "  # any import of them now fails
        f"fitted, X = pickle.loads(open({str(path)!r}, 'rb').read()); "
        "np.save(sys.argv[1], np.stack([est.predict(X) for est in fitted]))"
    )
    out = tmp_path / "pred.npy"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    np.testing.assert_array_equal(np.load(out), np.stack(expected).astype(float))
