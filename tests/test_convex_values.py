"""The convex combination's numbers against an independent NumPy computation.

The weights after a few full-batch steps are recomputed here without Keras: the same
loss written in NumPy, its gradient by central differences, and Adam's update rule
(Keras's defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7). Adam's first steps move each
logit by almost exactly the step size whatever the gradient's size, so the weights agree to
about 1e-6 (epsilon's share of the step differs slightly with Keras's float handling);
``WEIGHTS_RTOL`` leaves room for that, and a wrong loss, target or step moves them by
1e-3 or more. Unnormalised blocks (rows that do not sum to 1) make the per-row
renormalisation of single-label targets matter.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import log_loss

from stacking.meta._convex import ConvexCombinationClassifier, ConvexCombinationRegressor

N, N_MODELS, N_CLASSES = 40, 3, 3
STEPS = 4
WEIGHTS_RTOL, LOSS_RTOL = 2e-5, 1e-5


def _softmax0(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def _adam(loss, shape: tuple[int, ...], lr: float, steps: int) -> list[np.ndarray]:
    """Adam from zero logits with central-difference gradients; the logits after each step."""
    theta, m, v, out = np.zeros(shape), np.zeros(shape), np.zeros(shape), []
    for t in range(1, steps + 1):
        g = np.zeros(shape)
        for i in np.ndindex(shape):
            h = np.zeros(shape)
            h[i] = 1e-6
            g[i] = (loss(theta + h) - loss(theta - h)) / 2e-6
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        alpha = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        theta = theta - alpha * m / (np.sqrt(v) + 1e-7)
        out.append(theta.copy())
    return out


def _multiclass(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % N_CLASSES
    blocks = rng.uniform(0.05, 0.6, size=(N, N_MODELS, N_CLASSES))
    blocks[np.arange(N), 0, y] += 0.35  # model 0 is informative, the others are noise
    blocks[np.arange(N), 1, y] += 0.1
    sw = rng.uniform(0.2, 2.0, size=N)
    return blocks, y, sw


def _multiclass_loss(blocks, y, sw):
    def loss(logits):
        w = _softmax0(logits)
        p = np.einsum("nmk,mk->nk", blocks, np.broadcast_to(w, blocks.shape[1:]))
        p = p / p.sum(axis=1, keepdims=True)
        return float(np.sum(sw * -np.log(p[np.arange(len(y)), y])) / len(y))

    return loss


def test_convex_defaults_are_the_documented_ones():
    assert ConvexCombinationClassifier().get_params() == {
        "per_class": False,
        "learning_rate": 0.05,
        "epochs": 300,
        "patience": 20,
        "validation_fraction": 0.0,
        "random_state": None,
        "columns_per_model": "auto",
    }
    assert ConvexCombinationRegressor().get_params() == {
        "learning_rate": 0.05,
        "epochs": 300,
        "patience": 20,
        "validation_fraction": 0.0,
        "random_state": None,
    }


@pytest.mark.parametrize("per_class", [False, True])
def test_convex_classifier_weights_follow_adam_on_the_log_loss(per_class):
    blocks, y, sw = _multiclass()
    X = blocks.reshape(N, -1)
    clf = ConvexCombinationClassifier(per_class=per_class, epochs=STEPS, patience=50)
    clf.fit(X, y, sample_weight=sw)

    sw_mean1 = sw * N / sw.sum()
    loss = _multiclass_loss(blocks, y, sw_mean1)
    shape = (N_MODELS, N_CLASSES if per_class else 1)
    path = _adam(loss, shape, lr=0.05, steps=STEPS)
    expected = _softmax0(path[-1])
    assert clf.weights_.dtype == np.float64
    assert clf.weights_.shape == ((N_MODELS, N_CLASSES) if per_class else (N_MODELS,))
    assert_allclose(clf.weights_, expected if per_class else expected[:, 0], rtol=WEIGHTS_RTOL)
    # The monitored loss of each step is the weighted log loss of that step's weights.
    assert clf.n_iter_ == STEPS
    assert_allclose(clf.loss_curve_, [loss(t) for t in path], rtol=LOSS_RTOL)
    # predict_proba: the weighted blocks, renormalised per row (scikit-learn's log loss
    # of it is the last monitored loss).
    w = clf.weights_ if per_class else clf.weights_[:, None]
    combined = np.einsum("nmk,mk->nk", blocks, np.broadcast_to(w, blocks.shape[1:]))
    proba = combined / combined.sum(axis=1, keepdims=True)
    assert_allclose(clf.predict_proba(X), proba, rtol=1e-12)
    assert log_loss(y, clf.predict_proba(X), sample_weight=sw) == pytest.approx(
        clf.loss_curve_[-1], rel=1e-9
    )


def test_convex_classifier_multilabel_weights_follow_adam_on_binary_cross_entropy():
    rng = np.random.default_rng(1)
    Y = rng.integers(0, 2, size=(N, 2))
    blocks = rng.uniform(0.1, 0.9, size=(N, N_MODELS, 2))
    blocks[:, 0] = 0.5 * blocks[:, 0] + 0.45 * Y  # model 0 informative
    X = blocks.reshape(N, -1)

    def loss(logits):
        p = np.einsum("nmk,m->nk", blocks, _softmax0(logits)[:, 0])
        return float(-(Y * np.log(p) + (1 - Y) * np.log(1 - p)).mean(axis=1).mean())

    clf = ConvexCombinationClassifier(epochs=STEPS, patience=50).fit(X, Y)
    path = _adam(loss, (N_MODELS, 1), lr=0.05, steps=STEPS)
    weights = _softmax0(path[-1])[:, 0]
    assert_allclose(clf.weights_, weights, rtol=WEIGHTS_RTOL)
    assert_allclose(clf.loss_curve_, [loss(t) for t in path], rtol=LOSS_RTOL)
    assert loss(np.log(clf.weights_)[:, None]) == pytest.approx(clf.loss_curve_[-1], rel=1e-9)
    # Labels are not renormalised: each is the weighted mean of the models' label columns.
    assert_allclose(clf.predict_proba(X), np.einsum("nmk,m->nk", blocks, clf.weights_), rtol=1e-12)


def test_convex_regressor_weights_follow_adam_on_the_standardised_squared_error():
    rng = np.random.default_rng(2)
    truth = 5.0 + 3.0 * rng.normal(size=N)
    X = truth[:, None] + rng.normal(size=(N, N_MODELS)) * [0.5, 1.0, 3.0]
    sw = rng.uniform(0.5, 1.5, size=N)
    sw_mean1 = sw * N / sw.sum()
    mean = np.average(truth, weights=sw)
    scale = np.sqrt(np.average((truth - mean) ** 2, weights=sw))

    def loss(logits):
        pred = ((X - mean) / scale) @ _softmax0(logits)[:, 0]
        return float(np.sum(sw_mean1 * (pred - (truth - mean) / scale) ** 2) / N)

    reg = ConvexCombinationRegressor(epochs=STEPS, patience=50).fit(X, truth, sample_weight=sw)
    path = _adam(loss, (N_MODELS, 1), lr=0.05, steps=STEPS)
    weights = _softmax0(path[-1])[:, 0]
    assert_allclose(reg.weights_, weights, rtol=WEIGHTS_RTOL)
    assert_allclose(reg.loss_curve_, [loss(t) for t in path], rtol=LOSS_RTOL)
    assert reg.n_iter_ == STEPS
    assert loss(np.log(reg.weights_)[:, None]) == pytest.approx(reg.loss_curve_[-1], rel=1e-9)
    assert_allclose(reg.predict(X), X @ reg.weights_, rtol=1e-12)


def test_convex_validation_rows_are_drawn_from_random_state_and_only_monitored():
    blocks, y, _ = _multiclass(3)
    X = blocks.reshape(N, -1)
    clf = ConvexCombinationClassifier(
        epochs=STEPS, patience=50, validation_fraction=0.25, random_state=7
    ).fit(X, y)
    held_out = np.random.RandomState(7).permutation(N)[: int(np.ceil(0.25 * N))]
    train = np.setdiff1d(np.arange(N), held_out)
    ones = np.ones(N)
    path = _adam(_multiclass_loss(blocks[train], y[train], ones[train]), (3, 1), 0.05, STEPS)
    monitor = _multiclass_loss(blocks[held_out], y[held_out], ones[held_out])
    assert_allclose(clf.loss_curve_, [monitor(t) for t in path], rtol=LOSS_RTOL)
    best = int(np.argmin(clf.loss_curve_))
    assert_allclose(clf.weights_, _softmax0(path[best])[:, 0], rtol=WEIGHTS_RTOL)


def test_convex_early_stopping_waits_patience_steps():
    # A large step reaches the optimum at once: the loss stops improving (a relative drop
    # of more than 1e-4 counts) and training stops `patience` steps after the last gain.
    blocks, y, _ = _multiclass(4)
    X = blocks.reshape(N, -1)
    clf = ConvexCombinationClassifier(learning_rate=3.0, epochs=200, patience=3).fit(X, y)
    curve = clf.loss_curve_
    gains = [i for i in range(1, len(curve)) if curve[i] < min(curve[:i]) * (1 - 1e-4)]
    last_gain = max(gains, default=0)
    assert clf.n_iter_ == len(curve) == last_gain + 1 + 3 < 200
