"""Keras MLP meta-learners as scikit-learn estimators.

:class:`KerasMLPClassifier` / :class:`KerasMLPRegressor`: a small multilayer perceptron
on the standardised level-1 matrix (any columns: probabilities, logits, passthrough),
trained by Keras with early stopping (see :mod:`._keras_common`) and predicting in
NumPy: a fitted estimator holds no TensorFlow state, so it pickles, clones and predicts
without importing TensorFlow. ``n_iter_`` is the number of epochs run and
``loss_curve_`` the monitored loss after each. Two fits with the same integer
``random_state`` give identical predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import Tags, check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from stacking.errors import ConfigError, DataError
from stacking.meta._base import register_meta_learner
from stacking.meta._keras_common import (
    _MAX_SEED,
    _TRAINING_PARAMS,
    _import_keras,
    _log_softmax,
    _normalised_weights,
    _sigmoid,
    _train,
    _weighted_loss,
    _weighted_standardisation,
)


def _check_hidden_units(hidden_units: Sequence[int]) -> tuple[int, ...]:
    units = np.asarray(hidden_units, dtype=object)
    if units.ndim != 1 or not all(
        isinstance(u, Integral) and not isinstance(u, bool) and int(u) >= 1 for u in units
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
        hidden_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        l2: float = 0.0,
        learning_rate: float = 1e-3,
        epochs: int = 200,
        batch_size: int = 256,
        validation_fraction: float = 0.1,
        patience: int = 10,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.l2 = l2
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state

    def _fit_network(self, X: np.ndarray, target: np.ndarray, sw: np.ndarray, kind: str) -> None:
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
        h = inputs
        dense: list[Any] = []
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

        def monitor(weights: list[list[np.ndarray]], rows: np.ndarray) -> float:
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

    def _forward(self, X: np.ndarray) -> np.ndarray:
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

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> KerasMLPClassifier:
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

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)``; label probabilities for multilabel."""
        out = self._forward(X)
        if self._multilabel:
            return _sigmoid(out)
        return np.exp(_log_softmax(out))

    def predict(self, X: np.ndarray) -> np.ndarray:
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

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> KerasMLPRegressor:
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

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions ``(n,)``, or ``(n, n_targets)`` for a 2-D training target."""
        pred = self._forward(X) * self.y_scale_ + self.y_mean_
        return pred[:, 0] if self._single_output else pred


# ---------------------------------------------------------------------- convex combination


register_meta_learner("mlp", classifier=KerasMLPClassifier, regressor=KerasMLPRegressor)
