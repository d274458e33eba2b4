"""The learned convex combination, a Keras meta-learner as a scikit-learn estimator.

:class:`ConvexCombinationClassifier` / :class:`ConvexCombinationRegressor`: one
non-negative weight per base model (optionally per class), summing to one, learned by
minimising log loss / squared error with Adam. The level-1 layout is the one of
:mod:`stacking.meta._layout`; the classifier shares its target encoding, block layout
and clipping to ``[0, 1]`` with the other combiners (:class:`._combiners._BlockClassifier`).
Keras trains (:mod:`._keras_common`), NumPy predicts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    check_is_fitted,
    validate_data,
)

from stacking.meta._base import register_meta_learner
from stacking.meta._combiners import _COLUMNS_PER_MODEL, _BlockClassifier, _BlockRegressor
from stacking.meta._keras_common import (
    _EPS,
    _TRAINING_PARAMS,
    _import_keras,
    _normalised_weights,
    _train,
    _weighted_loss,
    _weighted_standardisation,
)


@functools.cache
def _convex_layer() -> type:
    """The Keras layer, defined on first use so that importing this module stays cheap."""
    keras = _import_keras()
    ops = keras.ops
    layer_base: Any = keras.layers.Layer  # keras is untyped: subclass through an Any alias

    class ConvexCombination(layer_base):
        """``sum_m softmax(logits)[m] * blocks[:, m]``; rows renormalised if asked."""

        def __init__(self, n_models: int, n_columns: int, renormalise: bool, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_models, self.n_columns, self.renormalise = n_models, n_columns, renormalise

        def build(self, input_shape: tuple[int | None, ...]) -> None:
            self.logits = self.add_weight(
                shape=(self.n_models, self.n_columns), initializer="zeros", name="logits"
            )

        def call(self, blocks: Any) -> Any:
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

    def monitor(weights: np.ndarray, rows: np.ndarray) -> float:
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
        random_state: int | np.random.RandomState | None = None,
        columns_per_model: int | str = "auto",
    ) -> None:
        self.per_class = per_class
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.columns_per_model = columns_per_model

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> ConvexCombinationClassifier:
        """Learn ``weights_``; ``sample_weight`` weights each row's log loss."""
        blocks, encoded, _ = self._fit_blocks(X, y, sample_weight)
        sw = _normalised_weights(sample_weight, blocks[:, 0])
        if self._task == "multilabel":
            kind, target = "multilabel", encoded.astype(np.float64)

            def row_loss(p: np.ndarray, t: np.ndarray) -> np.ndarray:
                p = np.clip(p, _EPS, 1 - _EPS)
                return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)

        else:
            kind, target = "multiclass", encoded

            def row_loss(p: np.ndarray, t: np.ndarray) -> np.ndarray:
                p = p / np.maximum(p.sum(axis=1, keepdims=True), _EPS)
                return -np.log(np.clip(p[np.arange(t.size), t], _EPS, 1.0))

        self.weights_, self.loss_curve_ = _fit_convex(
            self, blocks, target, sw, kind=kind, row_loss=row_loss
        )
        self.n_iter_ = len(self.loss_curve_)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Combined probabilities ``(n, n_classes)``, or ``(n, n_labels)`` for multilabel."""
        return self._as_probabilities(_combine(self._predict_blocks(X), self.weights_))


class ConvexCombinationRegressor(_BlockRegressor):
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
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> ConvexCombinationRegressor:
        """Learn ``weights_``; ``sample_weight`` weights each row's squared error."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        sw = _normalised_weights(sample_weight, X)
        self.n_models_ = X.shape[1]
        mean, scale = _weighted_standardisation(y[:, None], sw)
        blocks = ((X - mean) / scale)[:, :, None]
        target = (y[:, None] - mean) / scale

        def row_loss(pred: np.ndarray, t: np.ndarray) -> np.ndarray:
            return ((pred - t) ** 2)[:, 0]

        self.weights_, self.loss_curve_ = _fit_convex(
            self, blocks, target, sw, kind="regression", row_loss=row_loss
        )
        self.n_iter_ = len(self.loss_curve_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Weighted sum of the base predictions, shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.weights_


register_meta_learner(
    "convex", classifier=ConvexCombinationClassifier, regressor=ConvexCombinationRegressor
)
