"""Fixed (non-learned) combiners of base-model predictions, as scikit-learn estimators.

A combiner learns nothing from the rows: ``fit`` validates the level-1 layout (see
:mod:`stacking.meta._layout`) and records ``classes_``, ``n_features_in_``, ``n_models_`` and
``weights_``; ``predict`` combines the base models' blocks row by row. They are the
baselines a learned meta-model must beat (Kittler et al. 1998, "On combining classifiers").

Classification blocks hold all ``C`` class columns, or the last ``C - 1`` with the first
class implied as ``1 - sum``, exactly as a binary block holds the positive class only.
``columns_per_model="auto"`` prefers 1 column (binary) or ``C`` (multiclass), and takes
``C - 1`` when ``X`` does not divide into ``C``-column blocks. An explicit width ``w`` with
integer labels in ``0..w-1`` (the experiment's class indices) keeps all ``w`` classes, even
those absent from ``y`` (a rare class missing from a meta-level training fold). Multilabel
targets (an ``(n, L)`` 0/1 ``y``) take ``L`` columns per model. Values are clipped to
``[0, 1]`` where a probability is assumed, so any real ``X`` gives valid probabilities.

:class:`_BlockClassifier` is the plumbing every block classifier of ``stacking.meta`` shares.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import Tags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from stacking.errors import ConfigError, DataError
from stacking.meta._base import register_meta_learner
from stacking.meta._layout import split_blocks
from stacking.numeric import rank_against, rank_reference

_EPS = 1e-15
_VOTE_TIEBREAK = 1e-9
_CLASSIFIER_METHODS = ("mean", "weighted", "vote", "rank", "geometric")
_REGRESSOR_METHODS = ("mean", "weighted", "median")
_COLUMNS_PER_MODEL = [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")]

# scikit-learn conformance checks whose X no level-1 layout can hold: the classifiers
# refuse it with the layout error by design (``expected_failed_checks`` in the tests).
_MULTILABEL_X = "2 arbitrary columns for 5 labels are not blocks of 5 (one per label)"
LAYOUT_REFUSED_CHECKS = {
    "check_dtype_object": "10 arbitrary columns for 4 classes are not 4- or 3-column blocks",
    "check_classifier_multioutput": "20 arbitrary columns for 3 labels are not 3-column blocks",
    "check_classifiers_multilabel_representation_invariance": _MULTILABEL_X,
    "check_classifiers_multilabel_output_format_predict": _MULTILABEL_X,
    "check_classifiers_multilabel_output_format_predict_proba": _MULTILABEL_X,
    "check_classifiers_multilabel_output_format_decision_function": _MULTILABEL_X,
}


def _normalise_rows(scores: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; an all-zero row becomes uniform."""
    total = scores.sum(axis=1, keepdims=True)
    out = np.full_like(scores, 1.0 / scores.shape[1])
    np.divide(scores, total, out=out, where=total > 0)
    return out


def _resolve_weights(method: str, weights: ArrayLike | None, n_models: int) -> np.ndarray:
    """One weight per base model, summing to 1 (equal unless ``method='weighted'``)."""
    if method != "weighted":
        if weights is not None:
            raise ConfigError(
                f"weights are only used by method='weighted'. Received: method={method!r}, "
                f"weights={weights!r}; pass method='weighted' or drop weights."
            )
        return np.full(n_models, 1.0 / n_models)
    if weights is None:
        raise ConfigError(
            "method='weighted' needs one weight per base model. Received: weights=None"
        )
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size != n_models:
        raise ConfigError(
            f"weights must hold one value per base model, and X has {n_models} base-model "
            f"blocks. Received: weights={weights!r}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() == 0:
        raise ConfigError(
            f"weights must be finite, non-negative and not all zero. Received: weights={weights!r}"
        )
    return w / w.sum()


class _BlockClassifier(ClassifierMixin, BaseEstimator):
    _stacking_level1 = "blocks"  # tf-stacking's estimator tag: reads probability blocks
    """Target encoding and block layout shared by the classifiers of ``stacking.meta``.

    Subclasses call :meth:`_fit_blocks` in ``fit`` and :meth:`_predict_blocks` in
    ``predict_proba``; both return ``P`` of shape ``(n, n_models, K)``: full class
    probabilities (``K = C``) for binary and multiclass targets, label probabilities
    (``K = L``) for multilabel ones.
    """

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # A combination of probability blocks cannot fit arbitrary features.
        tags.classifier_tags.poor_score = True
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    def _fit_blocks(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Validate and set the fitted layout; return ``(P, y_encoded, sample_weight)``.

        ``y_encoded`` holds class indices ``0..C-1`` (the :mod:`stacking.metrics`
        representation), or the ``(n, L)`` indicator for multilabel targets.
        """
        X, y = validate_data(self, X, y, multi_output=True, dtype=np.float64)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        if type_of_target(y, input_name="y") == "multilabel-indicator":
            self._task = "multilabel"
            self.classes_ = np.arange(y.shape[1])
            y_encoded = np.asarray(y, dtype=int)
        elif y.ndim == 2 and y.shape[1] > 1:
            raise DataError(
                "a 2-D target must be a 0/1 multilabel indicator matrix. "
                f"Received: y of type {type_of_target(y)!r} and shape {y.shape}"
            )
        else:
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            self.classes_, y_encoded = np.unique(y, return_inverse=True)
            n_columns = 0 if self.columns_per_model == "auto" else max(2, self.columns_per_model)
            indices = self.classes_.dtype.kind in "iu" and self.classes_.min() >= 0
            if indices and len(self.classes_) < n_columns and self.classes_.max() < n_columns:
                # The blocks hold every class index, some absent from this y.
                self.classes_, y_encoded = np.arange(n_columns), y.astype(int)
            if len(self.classes_) < 2:
                raise DataError(
                    "a classifier needs at least 2 classes in y to combine class "
                    f"probabilities. Received: y with 1 class {self.classes_[0]!r}"
                )
            self._task = "binary" if len(self.classes_) == 2 else "multiclass"
        self.columns_per_model_ = self._resolve_width(X.shape[1])
        self.n_models_ = X.shape[1] // self.columns_per_model_
        return self._probability_blocks(X), y_encoded, sample_weight

    def _resolve_width(self, n_features: int) -> int:
        n_outputs = len(self.classes_)
        allowed: tuple[int, ...]
        if self._task == "multilabel":
            allowed = (n_outputs,)
        elif self._task == "binary":
            allowed = (1, 2)
        else:
            allowed = (n_outputs, n_outputs - 1)
        if self.columns_per_model == "auto":
            candidates = allowed
        elif self.columns_per_model in allowed:
            candidates = (self.columns_per_model,)
        else:
            raise ConfigError(
                f"a {self._task} block holds {' or '.join(map(str, allowed))} columns for "
                f"{n_outputs} classes/labels. Received: columns_per_model="
                f"{self.columns_per_model!r}"
            )
        for width in candidates:
            if n_features % width == 0:
                return int(width)
        raise DataError(
            f"X has {n_features} feature(s), which is not a whole number of base-model "
            f"blocks of {' or '.join(map(str, candidates))} columns for a {self._task} "
            f"target with {n_outputs} classes/labels. Pass X with one block per base model, "
            f"or columns_per_model matching its layout. Received: "
            f"columns_per_model={self.columns_per_model!r}"
        )

    def _probability_blocks(self, X: np.ndarray, clip: bool = True) -> np.ndarray:
        blocks = split_blocks(X, self.columns_per_model_)
        if clip:
            blocks = np.clip(blocks, 0.0, 1.0)
        if self._task != "multilabel" and blocks.shape[2] == len(self.classes_) - 1:
            first = 1.0 - blocks.sum(axis=2, keepdims=True)
            blocks = np.concatenate([np.clip(first, 0.0, 1.0) if clip else first, blocks], 2)
        return blocks

    def _predict_blocks(self, X: np.ndarray, clip: bool = True) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._probability_blocks(X, clip=clip)

    def _as_probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Combined scores to ``predict_proba`` output: rows sum to 1, labels in [0, 1]."""
        if self._task == "multilabel":
            return np.clip(scores, 0.0, 1.0)
        return _normalise_rows(np.clip(scores, 0.0, None))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class of highest combined probability; ``(n, L)`` 0/1 labels for multilabel."""
        proba = self.predict_proba(X)
        if self._task == "multilabel":
            return (proba >= 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]


class CombinerClassifier(_BlockClassifier):
    """Combine base models' class probabilities with a fixed rule.

    Parameters
    ----------
    method : {"mean", "weighted", "vote", "rank", "geometric"}, default="mean"
        ``mean``: arithmetic mean of the probabilities. ``weighted``: mean with
        ``weights``. ``vote``: majority vote of each model's argmax class;
        ``predict_proba`` is the vote fraction (plus ``1e-9`` times the mean probability,
        renormalised, so that ties are broken by the mean probability and ``predict`` is
        its argmax); not defined for multilabel targets. ``rank``: each model's score
        for each class (label; binary: the positive class) is ranked among that model's
        scores on the rows ``fit`` saw (the share of them, weighted by ``sample_weight``,
        that are ``<=`` it, in ``[0, 1]``), ranks averaged over models, then
        (multiclass) normalised per row; a row's output depends only on the row and the
        training rows, never on the rows predicted with it. It is meant for ranking
        metrics such as ``roc_auc``, not calibrated. ``geometric``: geometric mean of the
        probabilities, renormalised per row (per label for multilabel).
    weights : array-like of shape (n_models,), default=None
        One non-negative weight per base model, normalised to sum 1; required by, and
        only accepted with, ``method="weighted"``.
    columns_per_model : "auto" or int, default="auto"
        Width of each base model's block; see the module docstring.

    Attributes
    ----------
    classes_, n_features_in_, n_models_, columns_per_model_ : the fitted layout.
    weights_ : ndarray of shape (n_models,), the weights applied (equal unless weighted).
    rank_reference_ : tuple (``method="rank"`` only), each ranked column's training
        scores sorted and their cumulative weight shares (``None`` without
        ``sample_weight``), from :func:`stacking.numeric.rank_reference`.

    ``sample_weight`` weighs the training scores ``rank`` ranks against; the other methods
    validate it and learn nothing from rows.

    >>> import numpy as np
    >>> X = np.array([[0.9, 0.6], [0.2, 0.4]])  # binary: two models, P(class 1) each
    >>> CombinerClassifier().fit(X, [1, 0]).predict_proba(X)[:, 1]
    array([0.75, 0.3 ])
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(_CLASSIFIER_METHODS))],
        "weights": ["array-like", None],
        "columns_per_model": _COLUMNS_PER_MODEL,
    }

    def __init__(
        self,
        method: str = "mean",
        weights: ArrayLike | None = None,
        columns_per_model: int | str = "auto",
    ) -> None:
        self.method = method
        self.weights = weights
        self.columns_per_model = columns_per_model

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = self.method != "vote"
        tags.target_tags.multi_output = self.method != "vote"
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> CombinerClassifier:
        """Validate the layout of ``X`` against ``y`` and set the fitted attributes."""
        _, _, sample_weight = self._fit_blocks(X, y, sample_weight)
        if self.method == "vote" and self._task == "multilabel":
            raise ConfigError(
                "method='vote' is not defined for multilabel targets (no argmax class). "
                "Received: method='vote'; use 'mean', 'geometric' or 'rank'."
            )
        self.weights_ = _resolve_weights(self.method, self.weights, self.n_models_)
        if self.method == "rank":
            scores = self._rank_scores(self._predict_blocks(X, clip=False))
            self.rank_reference_ = rank_reference(scores, sample_weight)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Combined probabilities: ``(n, n_classes)``, or ``(n, n_labels)`` for multilabel."""
        if self.method == "rank":
            return self._rank_mean(self._predict_blocks(X, clip=False))
        blocks = self._predict_blocks(X)
        w = self.weights_
        mean = np.einsum("nmk,m->nk", blocks, w)
        if self.method == "vote":
            votes = np.eye(blocks.shape[2])[np.argmax(blocks, axis=2)]
            return _normalise_rows(np.einsum("nmk,m->nk", votes, w) + _VOTE_TIEBREAK * mean)
        if self.method == "geometric":
            log_p = np.einsum("nmk,m->nk", np.log(np.clip(blocks, _EPS, 1.0)), w)
            if self._task == "multilabel":
                log_q = np.einsum("nmk,m->nk", np.log(np.clip(1.0 - blocks, _EPS, 1.0)), w)
                return 1.0 / (1.0 + np.exp(log_q - log_p))
            return _normalise_rows(np.exp(log_p - log_p.max(axis=1, keepdims=True)))
        return self._as_probabilities(mean)

    def _rank_scores(self, blocks: np.ndarray) -> np.ndarray:
        """The ranked columns, ``(n, n_models * K)``: a binary block's positive class only."""
        if self._task == "binary":
            blocks = blocks[:, :, 1:]
        return blocks.reshape(len(blocks), -1)

    def _rank_mean(self, blocks: np.ndarray) -> np.ndarray:
        if not hasattr(self, "rank_reference_"):
            raise ConfigError(
                "this rank combiner was fitted without a training reference (saved by an "
                "older tf-stacking that ranked within each batch); re-run the experiment "
                "to refit it"
            )
        ranks = rank_against(self._rank_scores(blocks), *self.rank_reference_)
        ranks = ranks.reshape(len(blocks), self.n_models_, -1)
        mean_rank = np.einsum("nmk,m->nk", ranks, self.weights_)
        if self._task == "binary":
            return np.column_stack([1.0 - mean_rank[:, 0], mean_rank[:, 0]])
        if self._task == "multiclass":
            return _normalise_rows(mean_rank)
        return mean_rank


class _BlockRegressor(RegressorMixin, BaseEstimator):
    _stacking_level1 = "blocks"  # tf-stacking's estimator tag: reads prediction blocks
    """Base of the regressors that weight per-model prediction columns (no intercept)."""

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # A weighting of the columns cannot fit arbitrary features.
        tags.regressor_tags.poor_score = True
        return tags


class CombinerRegressor(_BlockRegressor):
    """Combine base models' predictions (one column each) with a fixed rule.

    Parameters
    ----------
    method : {"mean", "weighted", "median"}, default="mean"
        ``weighted`` uses ``weights``; ``median`` is robust to one wild base model.
    weights : array-like of shape (n_models,), default=None
        One non-negative weight per base model, normalised to sum 1; required by, and
        only accepted with, ``method="weighted"``.

    Attributes ``n_features_in_``, ``n_models_`` (equal: one column per model) and
    ``weights_``. ``sample_weight`` is validated and otherwise unused.

    >>> import numpy as np
    >>> X = np.array([[1.0, 3.0], [2.0, 6.0]])
    >>> CombinerRegressor("weighted", weights=[3, 1]).fit(X, [0, 0]).predict(X)
    array([1.5, 3. ])
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(_REGRESSOR_METHODS))],
        "weights": ["array-like", None],
    }

    def __init__(self, method: str = "mean", weights: ArrayLike | None = None) -> None:
        self.method = method
        self.weights = weights

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> CombinerRegressor:
        """Validate ``X`` and ``y`` and set ``n_models_`` and ``weights_``."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if sample_weight is not None:
            _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        self.n_models_ = X.shape[1]
        self.weights_ = _resolve_weights(self.method, self.weights, self.n_models_)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Combined prediction, shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if self.method == "median":
            return np.median(X, axis=1)
        return X @ self.weights_


for _method in ("mean", "weighted"):
    register_meta_learner(
        _method,
        classifier=CombinerClassifier,
        regressor=CombinerRegressor,
        defaults={"method": _method},
    )
register_meta_learner("median", regressor=CombinerRegressor, defaults={"method": "median"})
register_meta_learner(
    "vote",
    classifier=CombinerClassifier,
    defaults={"method": "vote"},
    tasks={"binary", "multiclass"},  # a vote needs one argmax class per row
)
for _method in ("rank", "geometric"):
    register_meta_learner(_method, classifier=CombinerClassifier, defaults={"method": _method})
