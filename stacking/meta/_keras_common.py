"""What the Keras meta-learners share: the training loop, sample weights, and NumPy math.

Keras trains, NumPy predicts. ``_train`` builds nothing itself: it runs ``train_on_batch``
(one compiled step per fit: ``Model.fit`` builds a ``tf.data`` iterator every epoch,
which dominates the cost on level-1-sized data), early-stops on an inner validation
split (or the training rows when ``validation_fraction=0``, an improvement being a
relative drop of more than ``1e-4``) and returns the best epoch's weights as NumPy
arrays. Every random choice derives from ``random_state``; global seeds are never
touched. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import (
    _check_sample_weight,
)

from stacking.errors import DataError

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


def _normalised_weights(sample_weight: np.ndarray | None, X: np.ndarray) -> np.ndarray:
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
    batches: Iterable[tuple[Any, ...]]
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
