"""Keras meta-learners as scikit-learn estimators: an MLP and a learned convex combination.

* :class:`KerasMLPClassifier` / :class:`KerasMLPRegressor`: a small multilayer perceptron
  on the standardised level-1 matrix (any columns: probabilities, logits, passthrough).
* :class:`ConvexCombinationClassifier` / :class:`ConvexCombinationRegressor`: one
  non-negative weight per base model (optionally per class), summing to one, learned by
  minimising log loss / squared error with Adam. The level-1 layout is the one of
  :mod:`stacking.meta._layout`; the classifier shares its target encoding, block layout
  and clipping to ``[0, 1]`` with the other combiners (:class:`._combiners._BlockClassifier`).

Keras trains, NumPy predicts. ``fit`` builds a Keras model, trains it with
``train_on_batch`` (one compiled step per fit: ``Model.fit`` builds a ``tf.data`` iterator
every epoch, which dominates the cost on level-1-sized data), keeps the weights of the best
epoch as NumPy arrays and drops the model. A fitted estimator holds no TensorFlow state: it
pickles, clones and predicts (in NumPy) without importing TensorFlow, and importing this
module does not import it either.

Early stopping monitors the loss on an inner validation split (``validation_fraction`` of
the rows, drawn at random) or, when ``validation_fraction=0``, on the training rows. An
epoch counts as an improvement when that loss falls below the best so far by more than a
relative ``1e-4``; training stops after ``patience`` epochs without one and the best
epoch's weights are kept. ``n_iter_`` is the number of epochs run and ``loss_curve_`` the
monitored loss after each.

Reproducibility: every random choice (initial weights, dropout masks, batch order,
validation split) derives from ``random_state``; global seeds are never touched, so two fits
with the same integer ``random_state`` give identical predictions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from stacking.errors import ConfigError, DataError
from stacking.meta._combiners import _COLUMNS_PER_MODEL, _BlockClassifier

_REL_TOL = 1e-4  # smallest relative drop of the monitored loss that counts as an improvement
_EPS = 1e-7  # probability clipping in the log loss, as Keras does
_MAX_SEED = np.iinfo(np.int32).max

_TRAINING_PARAMS: dict = {
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "epochs": [Interval(Integral, 1, None, closed="left")],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "patience": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
}


def _import_keras() -> Any:
    try:
        import keras
    except ImportError as e:  # pragma: no cover - keras is a hard dependency
        raise ImportError(
            "Keras meta-learners need Keras 3 and TensorFlow: "
            "pip install 'tensorflow>=2.16' 'keras>=3'"
        ) from e
    return keras


# ----------------------------------------------------------------------------- training


def _normalised_weights(sample_weight, X: np.ndarray) -> np.ndarray:
    """Validated non-negative weights rescaled to mean 1 (the loss scale stays that of
    unweighted data, so ``learning_rate`` means the same with or without weights)."""
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    return sw * (sw.size / sw.sum())


def _train(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    *,
    snapshot: Callable[[], Any],
    monitor: Callable[[Any, np.ndarray], float],
    epochs: int,
    batch_size: int,
    validation_fraction: float,
    patience: int,
    rng: np.random.RandomState,
    learning_rate: float,
) -> tuple[Any, np.ndarray]:
    """Train a compiled Keras ``model`` with early stopping.

    ``snapshot()`` returns the current weights as NumPy arrays and ``monitor(weights,
    rows)`` the loss of those weights on ``rows`` (computed in NumPy, so no second Keras
    function is traced). Returns the best snapshot and the monitored loss per epoch.
    """
    n = x.shape[0]
    order = rng.permutation(n)
    n_val = int(np.ceil(validation_fraction * n))
    if n_val >= n:
        raise DataError(
            f"cannot hold out validation_fraction={validation_fraction} of {n} sample(s) "
            "and still train on some. Pass more rows or validation_fraction=0."
        )
    train_rows = order[n_val:]
    monitor_rows = order[:n_val] if n_val else train_rows
    n_batches = -(-train_rows.size // batch_size)
    if n_batches == 1:  # full batch: convert to tensors once, not at every step
        convert = _import_keras().ops.convert_to_tensor
        full_batch = [tuple(convert(a[train_rows]) for a in (x, y, sample_weight))]
    best, best_loss, since_best, curve = None, np.inf, 0, []
    for _ in range(epochs):
        if n_batches == 1:
            batches = full_batch
        else:
            split = np.array_split(rng.permutation(train_rows), n_batches)
            batches = ((x[rows], y[rows], sample_weight[rows]) for rows in split)
        for x_batch, y_batch, weight_batch in batches:
            model.train_on_batch(x_batch, y_batch, sample_weight=weight_batch)
        weights = snapshot()
        loss = float(monitor(weights, monitor_rows))
        curve.append(loss)
        if not np.isfinite(loss):
            break
        if best is None or loss < best_loss * (1.0 - _REL_TOL):
            best, best_loss, since_best = weights, loss, 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    if best is None:
        raise DataError(
            "training diverged: the loss was not finite after the first epoch. Lower the "
            f"learning rate or rescale X. Received: learning_rate={learning_rate}"
        )
    return best, np.asarray(curve)


def _weighted_loss(per_row: np.ndarray, sample_weight: np.ndarray) -> float:
    """Mean of ``sample_weight * loss`` over rows (Keras's ``sum_over_batch_size``)."""
    return float(np.dot(per_row, sample_weight) / max(per_row.size, 1))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def _weighted_standardisation(a: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted column means and standard deviations (a constant column gets scale 1)."""
    mean = np.average(a, axis=0, weights=sw)
    scale = np.sqrt(np.average((a - mean) ** 2, axis=0, weights=sw))
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    return mean, np.where(scale > tiny, scale, 1.0)


# ---------------------------------------------------------------------------------- MLP


def _check_hidden_units(hidden_units) -> tuple[int, ...]:
    units = np.asarray(hidden_units, dtype=object)
    if units.ndim != 1 or not all(
        isinstance(u, Integral) and not isinstance(u, bool) and u >= 1 for u in units
    ):
        raise ConfigError(
            "hidden_units must be a sequence of positive integers, one per hidden layer, "
            "e.g. (32,) or (64, 32); () for no hidden layer. "
            f"Received: hidden_units={hidden_units!r}"
        )
    return tuple(int(u) for u in units)


def _mlp_forward(z: np.ndarray, coefs: list, intercepts: list) -> np.ndarray:
    """Output-layer pre-activations of the ReLU MLP (dropout is inactive at inference)."""
    h = z
    for w, b in zip(coefs[:-1], intercepts[:-1], strict=True):
        h = np.maximum(h @ w + b, 0.0)
    return h @ coefs[-1] + intercepts[-1]


def _mlp_row_losses(kind: str, out: np.ndarray, target: np.ndarray) -> np.ndarray:
    if kind == "softmax":
        return -_log_softmax(out)[np.arange(out.shape[0]), target]
    if kind == "sigmoid":
        return (np.logaddexp(0.0, out) - target * out).mean(axis=1)
    return ((out - target) ** 2).mean(axis=1)


class _KerasMLP(BaseEstimator):
    """Parameters, training and the NumPy forward pass shared by both MLP estimators."""

    _parameter_constraints: dict = {
        "hidden_units": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "l2": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        **_TRAINING_PARAMS,
    }

    def __init__(
        self,
        hidden_units=(32,),
        dropout: float = 0.0,
        l2: float = 0.0,
        learning_rate: float = 1e-3,
        epochs: int = 200,
        batch_size: int = 256,
        validation_fraction: float = 0.1,
        patience: int = 10,
        random_state=None,
    ):
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.l2 = l2
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state

    def _fit_network(self, X: np.ndarray, target: np.ndarray, sw: np.ndarray, kind: str):
        """Standardise ``X``, train the network and store its best weights in NumPy.

        ``kind`` is the output: ``softmax`` (``target`` holds class indices), ``sigmoid``
        (a 0/1 indicator matrix) or ``linear`` (standardised targets, one column each).
        """
        units = _check_hidden_units(self.hidden_units)
        self.x_mean_, self.x_scale_ = _weighted_standardisation(X, sw)
        z = (X - self.x_mean_) / self.x_scale_
        n_outputs = len(self.classes_) if kind == "softmax" else target.shape[1]
        rng = check_random_state(self.random_state)
        seeds = iter(rng.randint(_MAX_SEED, size=2 * len(units) + 1).tolist())

        keras = _import_keras()
        regularizer = keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        inputs = keras.Input(shape=(z.shape[1],), dtype="float32")
        h, dense = inputs, []
        for n_units in (*units, n_outputs):
            layer = keras.layers.Dense(
                n_units,
                activation="relu" if len(dense) < len(units) else None,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                kernel_regularizer=regularizer,
            )
            dense.append(layer)
            h = layer(h)
            if self.dropout > 0 and len(dense) <= len(units):
                h = keras.layers.Dropout(self.dropout, seed=next(seeds))(h)
        model = keras.Model(inputs, h)
        loss = {
            "softmax": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "sigmoid": keras.losses.BinaryCrossentropy(from_logits=True),
            "linear": keras.losses.MeanSquaredError(),
        }[kind]
        model.compile(keras.optimizers.Adam(self.learning_rate), loss=loss, jit_compile=False)
        model.optimizer.build(model.trainable_variables)  # else the first step is traced twice

        def monitor(weights, rows):
            out = _mlp_forward(z[rows], *zip(*weights, strict=True))
            return _weighted_loss(_mlp_row_losses(kind, out, target[rows]), sw[rows])

        best, self.loss_curve_ = _train(
            model,
            z.astype(np.float32),
            target if kind == "softmax" else target.astype(np.float32),
            sw.astype(np.float32),
            snapshot=lambda: [layer.get_weights() for layer in dense],
            monitor=monitor,
            epochs=self.epochs,
            batch_size=self.batch_size,
            validation_fraction=self.validation_fraction,
            patience=self.patience,
            rng=rng,
            learning_rate=self.learning_rate,
        )
        self.coefs_ = [w for w, _ in best]
        self.intercepts_ = [b for _, b in best]
        self.n_iter_ = len(self.loss_curve_)

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return _mlp_forward((X - self.x_mean_) / self.x_scale_, self.coefs_, self.intercepts_)


class KerasMLPClassifier(ClassifierMixin, _KerasMLP):
    """A Keras MLP meta-classifier: softmax over ``classes_``, or a sigmoid per label.

    ``y`` is a vector of class labels (binary or multiclass: softmax output, sparse
    categorical cross-entropy) or an ``(n, L)`` 0/1 indicator matrix (multilabel: one
    sigmoid per label, binary cross-entropy; ``classes_`` is then ``arange(L)``). ``X`` is
    standardised with the (sample-weighted) training mean and std; hidden layers are ReLU.

    Parameters
    ----------
    hidden_units : sequence of int, default=(32,)
        Units of each hidden layer; ``()`` is multinomial logistic regression.
    dropout : float in [0, 1), default=0.0
        Dropout rate after each hidden layer during training.
    l2 : float >= 0, default=0.0
        L2 penalty factor on every kernel (Keras ``L2(l2)``: ``l2 * sum(w ** 2)``).
    learning_rate : float > 0, default=1e-3
        Adam's step size.
    epochs : int >= 1, default=200
        Maximum passes over the training rows.
    batch_size : int >= 1, default=256
        Rows per Adam step (batches are of near-equal size).
    validation_fraction : float in [0, 1), default=0.1
        Share of rows held out for early stopping; ``0`` monitors the training loss.
    patience : int >= 1, default=10
        Epochs without improvement before training stops (best weights are kept).
    random_state : int, RandomState instance or None, default=None
        Seeds initial weights, dropout, batch order and the validation split.

    Attributes
    ----------
    classes_ : ndarray of the class labels (``arange(L)`` for multilabel ``y``).
    coefs_, intercepts_ : lists of NumPy arrays, the kernel ``(in, out)`` and bias of each
        layer.
    x_mean_, x_scale_ : ndarray of shape (n_features,), the input standardisation.
    n_iter_ : int, epochs run; loss_curve_ : ndarray, the monitored loss per epoch.
    n_features_in_, feature_names_in_ : as in scikit-learn.

    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 4)
    >>> y = (X[:, 0] + X[:, 2] > 1).astype(int)
    >>> clf = KerasMLPClassifier(epochs=50, learning_rate=1e-2, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (200, 2)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None) -> KerasMLPClassifier:
        """Train the network; ``sample_weight`` weights each row's loss."""
        _check_hidden_units(self.hidden_units)
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        sw = _normalised_weights(sample_weight, X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if type_of_target(y, input_name="y") == "multilabel-indicator":
            self._multilabel = True
            self.classes_ = np.arange(y.shape[1])
            self._fit_network(X, np.asarray(y, dtype=np.float64), sw, "sigmoid")
            return self
        if y.ndim == 2:
            raise DataError(
                "a 2-D target must be a 0/1 multilabel indicator matrix. "
                f"Received: y of type {type_of_target(y)!r} and shape {y.shape}"
            )
        check_classification_targets(y)
        self._multilabel = False
        self.classes_, encoded = np.unique(y, return_inverse=True)
        weighted = self.classes_[np.unique(encoded[sw > 0])]
        if weighted.size < 2:
            raise DataError(
                f"{type(self).__name__} needs rows of at least 2 classes with a positive "
                f"sample_weight to learn from. Received: rows of one class, {weighted[0]!r}"
            )
        self._fit_network(X, encoded, sw, "softmax")
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``; label probabilities for multilabel."""
        out = self._forward(X)
        if self._multilabel:
            return _sigmoid(out)
        return np.exp(_log_softmax(out))

    def predict(self, X) -> np.ndarray:
        """Most probable class; an ``(n, L)`` 0/1 matrix (probability > 0.5) for multilabel."""
        proba = self.predict_proba(X)
        if self._multilabel:
            return (proba > 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]


class KerasMLPRegressor(RegressorMixin, _KerasMLP):
    """A Keras MLP meta-regressor on standardised inputs and targets (squared error).

    ``y`` may be ``(n,)`` or ``(n, n_targets)``: one linear output per target. Parameters
    are those of :class:`KerasMLPClassifier`.

    Attributes as :class:`KerasMLPClassifier` (without ``classes_``), plus ``y_mean_`` and
    ``y_scale_``, the target standardisation.

    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(200, 3)
    >>> reg = KerasMLPRegressor(epochs=50, learning_rate=1e-2, random_state=0)
    >>> reg.fit(X, X @ [1.0, 2.0, 0.0]).predict(X).shape
    (200,)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None) -> KerasMLPRegressor:
        """Train the network; ``sample_weight`` weights each row's loss."""
        _check_hidden_units(self.hidden_units)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        sw = _normalised_weights(sample_weight, X)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        self._single_output = y.ndim == 1
        y2d = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
        self.y_mean_, self.y_scale_ = _weighted_standardisation(y2d, sw)
        self._fit_network(X, (y2d - self.y_mean_) / self.y_scale_, sw, "linear")
        return self

    def predict(self, X) -> np.ndarray:
        """Predictions ``(n,)``, or ``(n, n_targets)`` for a 2-D training target."""
        pred = self._forward(X) * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._single_output else pred


# ---------------------------------------------------------------------- convex combination


@functools.cache
def _convex_layer() -> type:
    """The Keras layer, defined on first use so that importing this module stays cheap."""
    keras = _import_keras()
    ops = keras.ops

    class ConvexCombination(keras.layers.Layer):
        """``sum_m softmax(logits)[m] * blocks[:, m]``; rows renormalised if asked."""

        def __init__(self, n_models: int, n_columns: int, renormalise: bool, **kwargs):
            super().__init__(**kwargs)
            self.n_models, self.n_columns, self.renormalise = n_models, n_columns, renormalise

        def build(self, input_shape):
            self.logits = self.add_weight(
                shape=(self.n_models, self.n_columns), initializer="zeros", name="logits"
            )

        def call(self, blocks):
            combined = ops.sum(blocks * ops.softmax(self.logits, axis=0), axis=1)
            if self.renormalise:
                total = ops.sum(combined, axis=-1, keepdims=True)
                combined = combined / ops.maximum(total, _EPS)
            return combined

    return ConvexCombination


def _combine(blocks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(n, M, K)`` blocks and ``(M,)`` or ``(M, K)`` weights to ``(n, K)``."""
    w = weights[:, None] if weights.ndim == 1 else weights
    return np.einsum("nmk,mk->nk", blocks, np.broadcast_to(w, blocks.shape[1:]))


def _fit_convex(
    estimator: Any,
    blocks: np.ndarray,
    target: np.ndarray,
    sw: np.ndarray,
    *,
    kind: str,
    row_loss: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Learn convex weights on ``(n, M, K)`` blocks with ``estimator``'s training params.

    Returns the weights, ``(M,)`` (or ``(M, K)`` with ``per_class``), and the loss curve.

    ``kind`` selects the Keras loss: ``multiclass`` (rows renormalised, sparse categorical
    cross-entropy), ``multilabel`` (binary cross-entropy per column) or ``regression``.
    Trained in float64 full-batch: the model has ``M`` (or ``M * K``) parameters.
    """
    keras = _import_keras()
    _, n_models, width = blocks.shape
    per_class = getattr(estimator, "per_class", False)
    n_columns = width if per_class else 1
    inputs = keras.Input(shape=(n_models, width), dtype="float64")
    layer = _convex_layer()(n_models, n_columns, kind == "multiclass", dtype="float64")
    model = keras.Model(inputs, layer(inputs))
    loss = {
        "multiclass": keras.losses.SparseCategoricalCrossentropy(dtype="float64"),
        "multilabel": keras.losses.BinaryCrossentropy(dtype="float64"),
        "regression": keras.losses.MeanSquaredError(dtype="float64"),
    }[kind]
    model.compile(keras.optimizers.Adam(estimator.learning_rate), loss=loss, jit_compile=False)
    model.optimizer.build(model.trainable_variables)  # else the first step is traced twice

    def snapshot() -> np.ndarray:
        logits = layer.get_weights()[0]
        w = np.exp(logits - logits.max(axis=0))
        return w / w.sum(axis=0)

    def monitor(weights, rows):
        return _weighted_loss(row_loss(_combine(blocks[rows], weights), target[rows]), sw[rows])

    best, curve = _train(
        model,
        blocks,
        target,
        sw,
        snapshot=snapshot,
        monitor=monitor,
        epochs=estimator.epochs,
        batch_size=blocks.shape[0],
        validation_fraction=estimator.validation_fraction,
        patience=estimator.patience,
        rng=check_random_state(estimator.random_state),
        learning_rate=estimator.learning_rate,
    )
    return (best if per_class else best[:, 0]), curve


class ConvexCombinationClassifier(_BlockClassifier):
    """Learn non-negative base-model weights summing to one, by minimising log loss.

    ``X`` is the level-1 matrix of :mod:`stacking.meta._layout`: one probability block per
    base model. Blocks are read exactly as by the other combiners (see
    :mod:`stacking.meta._combiners`): ``columns_per_model="auto"`` takes 1 column (the
    positive class) for binary targets and ``C`` (or ``C - 1``, the first class implied)
    for ``C`` classes; multilabel ``y`` (an ``(n, L)`` 0/1 indicator) takes ``L``. Values
    are clipped to ``[0, 1]``, so out-of-range inputs (round-off, logits by mistake) cannot
    produce invalid probabilities; a width that is no whole number of blocks is an error.

    The model is ``p = sum_m w_m * P_m`` with ``w = softmax(logits)`` over models,
    renormalised per row for single-label targets; with ``per_class=True`` each class (or
    label) has its own softmax over models. Trained full-batch with Adam from equal
    weights, in float64.

    Parameters
    ----------
    per_class : bool, default=False
        One weight per base model per class instead of one per base model.
    learning_rate : float > 0, default=0.05
        Adam's step size on the weight logits.
    epochs : int >= 1, default=300
        Maximum Adam steps (one per epoch: full batch).
    patience : int >= 1, default=20
        Steps without improvement of the monitored log loss before stopping.
    validation_fraction : float in [0, 1), default=0.0
        Share of rows held out to monitor; ``0`` monitors the training loss.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split (the fit is otherwise deterministic).
    columns_per_model : "auto" or int, default="auto"
        Width of each base model's block.

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,), or (n_models, n_classes) with ``per_class``
        (``n_labels`` columns for multilabel); non-negative, each column sums to 1.
    classes_, n_models_, columns_per_model_, n_features_in_ : the fitted layout.
    n_iter_ : int, steps run; loss_curve_ : ndarray, the monitored loss per step.

    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> p_good, p_noise = rng.rand(500), rng.rand(500)
    >>> y = (rng.rand(500) < p_good).astype(int)
    >>> X = np.column_stack([p_good, p_noise])  # binary: P(class 1) of two base models
    >>> clf = ConvexCombinationClassifier(random_state=0).fit(X, y)
    >>> bool(clf.weights_[0] > 0.9)
    True
    """

    _parameter_constraints: dict = {
        "per_class": ["boolean"],
        **_TRAINING_PARAMS,
        "columns_per_model": _COLUMNS_PER_MODEL,
    }

    def __init__(
        self,
        per_class: bool = False,
        learning_rate: float = 0.05,
        epochs: int = 300,
        patience: int = 20,
        validation_fraction: float = 0.0,
        random_state=None,
        columns_per_model="auto",
    ):
        self.per_class = per_class
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.columns_per_model = columns_per_model

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None) -> ConvexCombinationClassifier:
        """Learn ``weights_``; ``sample_weight`` weights each row's log loss."""
        blocks, encoded, _ = self._fit_blocks(X, y, sample_weight)
        sw = _normalised_weights(sample_weight, blocks[:, 0])
        if self._task == "multilabel":
            kind, target = "multilabel", encoded.astype(np.float64)

            def row_loss(p, t):
                p = np.clip(p, _EPS, 1 - _EPS)
                return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)

        else:
            kind, target = "multiclass", encoded

            def row_loss(p, t):
                p = p / np.maximum(p.sum(axis=1, keepdims=True), _EPS)
                return -np.log(np.clip(p[np.arange(t.size), t], _EPS, 1.0))

        self.weights_, self.loss_curve_ = _fit_convex(
            self, blocks, target, sw, kind=kind, row_loss=row_loss
        )
        self.n_iter_ = len(self.loss_curve_)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Combined probabilities ``(n, n_classes)``, or ``(n, n_labels)`` for multilabel."""
        return self._as_probabilities(_combine(self._predict_blocks(X), self.weights_))


class ConvexCombinationRegressor(RegressorMixin, BaseEstimator):
    """Learn non-negative base-model weights summing to one, by minimising squared error.

    ``X`` has one column per base model (its prediction); ``predict`` is ``X @ weights_``
    (no intercept: a convex combination of the base predictions). The loss is computed on
    targets standardised with the training mean and std, which leaves the optimum
    unchanged (the weights sum to one) and makes ``learning_rate`` scale-free. Parameters
    are those of :class:`ConvexCombinationClassifier` without ``per_class`` and
    ``columns_per_model``.

    Attributes ``weights_`` (shape ``(n_models,)``), ``n_models_``, ``n_iter_``,
    ``loss_curve_``, ``n_features_in_``.

    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 2)
    >>> reg = ConvexCombinationRegressor(random_state=0).fit(X, X @ [0.7, 0.3])
    >>> reg.weights_.round(1)
    array([0.7, 0.3])
    """

    _parameter_constraints: dict = dict(_TRAINING_PARAMS)

    def __init__(
        self,
        learning_rate: float = 0.05,
        epochs: int = 300,
        patience: int = 20,
        validation_fraction: float = 0.0,
        random_state=None,
    ):
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A convex combination of the columns cannot fit arbitrary features.
        tags.regressor_tags.poor_score = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None) -> ConvexCombinationRegressor:
        """Learn ``weights_``; ``sample_weight`` weights each row's squared error."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        sw = _normalised_weights(sample_weight, X)
        self.n_models_ = X.shape[1]
        mean, scale = _weighted_standardisation(y[:, None], sw)
        blocks = ((X - mean) / scale)[:, :, None]
        target = (y[:, None] - mean) / scale

        def row_loss(pred, t):
            return ((pred - t) ** 2)[:, 0]

        self.weights_, self.loss_curve_ = _fit_convex(
            self, blocks, target, sw, kind="regression", row_loss=row_loss
        )
        self.n_iter_ = len(self.loss_curve_)
        return self

    def predict(self, X) -> np.ndarray:
        """Weighted sum of the base predictions, shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.weights_
