"""Non-negative least squares weights, one per base model.

Breiman (1996), "Stacked regressions", Machine Learning 24(1): combining base predictions
with non-negative weights is what makes stacking reliably beat the best base model; the
Super Learner (van der Laan, Polley and Hubbard 2007) uses the same non-negative least
squares combination, weights normalised to sum 1, as its default meta-learner. The solver
is :func:`scipy.optimize.nnls` (Lawson and Hanson's active-set method).

Classification stacks each base model's probability block into one column of the design
matrix: binary targets regress the positive-class probability on ``y`` in ``{0, 1}``;
multiclass and multilabel targets regress all ``rows x classes`` cells on the one-hot (or
indicator) target. One weight per base model, never per class, so that a model's block is
scaled as a whole and the combination stays a probability.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.base import _fit_context
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from stacking.meta._base import register_meta_learner
from stacking.meta._combiners import _COLUMNS_PER_MODEL, _BlockClassifier, _BlockRegressor


def _nnls_weights(
    design: np.ndarray, target: np.ndarray, row_weight: np.ndarray | None, normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(coef_, weights_)`` of ``min ||sqrt(w) * (design @ coef - target)||, coef >= 0``."""
    if row_weight is not None:
        root = np.sqrt(row_weight)
        design, target = design * root[:, None], target * root
    coef, _ = nnls(design, target)
    if not normalize:
        return coef, coef.copy()
    total = coef.sum()
    if total > 0:
        return coef, coef / total
    return coef, np.full(coef.size, 1.0 / coef.size)


class NNLSClassifier(_BlockClassifier):
    """Weight base models' probability blocks by non-negative least squares.

    ``fit`` solves ``min ||A c - b||, c >= 0`` with :func:`scipy.optimize.nnls`, where
    ``A`` has one column per base model (its positive-class probabilities for binary
    targets, else its ``rows x classes`` probabilities flattened row-major) and ``b`` is
    ``y`` (binary) or the flattened one-hot / indicator target. ``sample_weight`` scales
    each row (all its class cells) by ``sqrt(w)``. ``predict_proba`` is the
    ``weights_``-weighted sum of the probability blocks, renormalised per row (clipped to
    ``[0, 1]`` per label for multilabel targets).

    Parameters
    ----------
    normalize : bool, default=True
        Rescale the solution to sum 1 (a convex combination, as in the Super Learner).
        When every coefficient is zero the weights fall back to equal weights.
        Without normalisation ``weights_`` is ``coef_``; the per-row renormalisation of
        single-label probabilities makes both give the same ``predict_proba``.
    columns_per_model : "auto" or int, default="auto"
        Width of each base model's block; see :mod:`stacking.meta._combiners`.

    Attributes
    ----------
    coef_ : ndarray of shape (n_models,), the raw non-negative least squares solution.
    weights_ : ndarray of shape (n_models,), the weights applied.
    classes_, n_features_in_, n_models_, columns_per_model_ : the fitted layout.

    >>> import numpy as np
    >>> X = np.array([[0.9, 0.5], [0.2, 0.5], [0.8, 0.5], [0.1, 0.5]])
    >>> NNLSClassifier().fit(X, [1, 0, 1, 0]).weights_.round(2)
    array([1., 0.])
    """

    _parameter_constraints: dict = {
        "normalize": ["boolean"],
        "columns_per_model": _COLUMNS_PER_MODEL,
    }

    def __init__(self, normalize: bool = True, columns_per_model: int | str = "auto") -> None:
        self.normalize = normalize
        self.columns_per_model = columns_per_model

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> NNLSClassifier:
        """Solve for one non-negative weight per base model."""
        blocks, y_encoded, sample_weight = self._fit_blocks(X, y, sample_weight)
        n_rows, n_models, n_outputs = blocks.shape
        if self._task == "binary":
            design, target = blocks[:, :, 1], y_encoded.astype(np.float64)
        else:
            design = blocks.transpose(0, 2, 1).reshape(n_rows * n_outputs, n_models)
            onehot = y_encoded if self._task == "multilabel" else np.eye(n_outputs)[y_encoded]
            target = onehot.reshape(-1).astype(np.float64)
            if sample_weight is not None:
                sample_weight = np.repeat(sample_weight, n_outputs)
        self.coef_, self.weights_ = _nnls_weights(design, target, sample_weight, self.normalize)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Weighted sum of the blocks: ``(n, n_classes)``, or ``(n, n_labels)``."""
        blocks = self._predict_blocks(X)
        return self._as_probabilities(np.einsum("nmk,m->nk", blocks, self.weights_))


class NNLSRegressor(_BlockRegressor):
    """Weight base models' predictions (one column each) by non-negative least squares.

    ``fit`` solves ``min ||X c - y||, c >= 0`` with :func:`scipy.optimize.nnls`, rows
    scaled by ``sqrt(sample_weight)``; there is no intercept. ``predict`` is
    ``X @ weights_``.

    Parameters
    ----------
    normalize : bool, default=True
        Rescale the solution to sum 1 (Breiman's convex combination). When every
        coefficient is zero the weights fall back to equal weights. Without
        normalisation ``weights_`` is ``coef_``, the least-squares fit itself.

    Attributes ``coef_`` (raw solution), ``weights_`` (applied), ``n_features_in_`` and
    ``n_models_`` (equal: one column per model).

    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [2.0, 5.0], [3.0, 1.0]])
    >>> NNLSRegressor().fit(X, [1.0, 2.0, 3.0]).weights_.round(2)
    array([1., 0.])
    """

    _parameter_constraints: dict = {"normalize": ["boolean"]}

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> NNLSRegressor:
        """Solve for one non-negative weight per base model."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        self.n_models_ = X.shape[1]
        self.coef_, self.weights_ = _nnls_weights(X, y, sample_weight, self.normalize)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Weighted sum of the base predictions, shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.weights_


register_meta_learner("nnls", classifier=NNLSClassifier, regressor=NNLSRegressor)
