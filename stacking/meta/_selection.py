"""Greedy ensemble selection from a library of base models.

Caruana, Niculescu-Mizil, Crew and Ksikes (2004), "Ensemble selection from libraries of
models", ICML. Starting from the ``n_init`` best single models (sorted initialisation),
each step adds, *with replacement*, the base model whose addition gives the running average
of the selected models' predictions the best score; a model's weight is the share of the
selections it received. Bagged selection (``n_bags > 1``) runs the procedure on random
subsets of ``bag_fraction`` of the models and averages the bags' weights, which keeps a few
strong models from crowding out the rest. As in auto-sklearn, the ensemble is the whole
path: the paper's optional last step (keep the best-scoring prefix) is not applied, since
with replacement the score plateaus instead of declining.

Scores come from :mod:`stacking.metrics`, so a name such as ``"log_loss"`` or ``"rmse"`` is
optimised in its natural direction, on the same representation the leaderboard uses.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from stacking.errors import ConfigError
from stacking.meta._base import register_meta_learner
from stacking.meta._combiners import _COLUMNS_PER_MODEL, _BlockClassifier, _BlockRegressor
from stacking.metrics import Metric, get_metric

_PARAMS: dict = {
    "n_iter": [Interval(Integral, 0, None, closed="left")],
    "scoring": [str, None],
    "n_init": [Interval(Integral, 1, None, closed="left")],
    "n_bags": [Interval(Integral, 1, None, closed="left")],
    "bag_fraction": [Interval(Real, 0, 1, closed="right")],
    "random_state": ["random_state"],
}


def _metric_for(scoring: str | None, default: str, task: str) -> Metric:
    name = default if scoring is None else scoring
    try:
        metric = get_metric(name)
    except ValueError as e:
        raise ConfigError(f"{e}. Received: scoring={scoring!r}") from e
    if task not in metric.tasks:
        raise ConfigError(
            f"scoring {metric.name!r} does not apply to a {task} target. "
            f"Received: scoring={scoring!r}"
        )
    return metric


def _greedy_path(
    preds: np.ndarray,
    candidates: np.ndarray,
    score: Callable,
    metric: Metric,
    n_init: int,
    n_iter: int,
) -> tuple[list[int], list[float]]:
    """Caruana's selection on ``preds[:, m]`` for ``m`` in ``candidates``.

    Scores equal to 12 significant digits tie, and ties go to the lowest model index, so
    that rounding noise never decides; a NaN score loses to any number.
    """

    def rounded(pred: np.ndarray) -> float:
        return float(f"{score(pred):.12g}")

    def better(a: float, b: float | None) -> bool:
        return b is None or (np.isnan(b) and not np.isnan(a)) or metric.better(a, b)

    singles = np.array([rounded(preds[:, m]) for m in candidates])
    key = np.where(np.isnan(singles), np.inf, -singles if metric.greater_is_better else singles)
    path = [int(m) for m in candidates[np.argsort(key, kind="stable")[:n_init]]]
    total = np.zeros_like(preds[:, 0])
    scores = []
    for size, m in enumerate(path, start=1):
        total = total + preds[:, m]
        scores.append(rounded(total / size))
    for _ in range(n_iter):
        best_m, best_s = -1, None
        for m in candidates:
            s = rounded((total + preds[:, m]) / (len(path) + 1))
            if better(s, best_s):
                best_m, best_s = int(m), s
        assert best_s is not None  # a bag holds at least one candidate
        path.append(best_m)
        scores.append(best_s)
        total = total + preds[:, best_m]
    return path, scores


class _EnsembleSelectionMixin:
    """The bagged selection loop shared by the classifier and the regressor."""

    # Set by the estimators' __init__ / fit (sklearn's contract); declared for type checkers.
    n_init: int
    n_iter: int
    n_bags: int
    bag_fraction: float
    random_state: int | np.random.RandomState | None
    n_features_in_: int

    def _select(self, preds: np.ndarray, score: Callable, metric: Metric) -> None:
        n_models = preds.shape[1]
        if self.n_init > n_models:
            raise ConfigError(
                f"X has {self.n_features_in_} feature(s), that is {n_models} base model(s): "
                f"fewer than the n_init={self.n_init} initial models asked for; lower n_init. "
                f"Received: n_init={self.n_init}"
            )
        rng = check_random_state(self.random_state)
        weights, paths, scores, bags = np.zeros(n_models), [], [], []
        for _ in range(self.n_bags):
            if self.n_bags == 1:
                bag = np.arange(n_models)
            else:
                size = max(1, round(self.bag_fraction * n_models))
                bag = np.sort(rng.choice(n_models, size=size, replace=False))
            n_init = min(self.n_init, bag.size)
            path, path_scores = _greedy_path(preds, bag, score, metric, n_init, self.n_iter)
            weights += np.bincount(path, minlength=n_models) / len(path)
            paths.append(path)
            scores.append(path_scores)
            bags.append(bag)
        self.n_models_ = n_models
        self.weights_ = weights / self.n_bags
        self.bags_ = bags
        self.selection_path_ = paths[0] if self.n_bags == 1 else paths
        self.scores_path_ = scores[0] if self.n_bags == 1 else scores


class EnsembleSelectionClassifier(_EnsembleSelectionMixin, _BlockClassifier):
    """Caruana et al. (2004) ensemble selection over probability blocks.

    ``predict_proba`` is the ``weights_``-weighted average of the base models' probability
    blocks (renormalised per row; per label for multilabel targets). ``sample_weight``
    weights the rows in the score.

    Parameters
    ----------
    n_iter : int, default=50
        Greedy additions after the sorted initialisation; a path has ``n_init + n_iter``
        selections.
    scoring : str, default=None
        A :mod:`stacking.metrics` name, optimised in its natural direction; ``None`` means
        ``"log_loss"``.
    n_init : int, default=1
        Start from the ``n_init`` best single models (capped at a bag's size).
    n_bags : int, default=1
        Number of bags; with 1, every model is a candidate and ``bag_fraction`` is unused.
    bag_fraction : float in (0, 1], default=0.5
        Share of the models each bag draws at random, without replacement (at least one).
    random_state : int, RandomState instance or None, default=None
        Seeds the bags' draws; selection itself is deterministic (ties: lowest index).
    columns_per_model : "auto" or int, default="auto"
        Width of each base model's block; see :mod:`stacking.meta._combiners`.

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,)
        Share of the selections each base model received (averaged over bags); sums to 1.
    selection_path_ : list of int
        Model indices in the order chosen, the ``n_init`` sorted ones first. With
        ``n_bags > 1``, one such list per bag.
    scores_path_ : list of float
        Score of the running ensemble after each selection (one list per bag if bagged).
    bags_ : list of ndarray
        Model indices available to each bag (all models when ``n_bags == 1``).
    classes_, n_features_in_, n_models_, columns_per_model_ : the fitted layout.

    >>> import numpy as np
    >>> X = np.array([[0.9, 0.4], [0.2, 0.6], [0.7, 0.5], [0.3, 0.5]])
    >>> EnsembleSelectionClassifier(n_iter=3).fit(X, [1, 0, 1, 0]).selection_path_
    [0, 0, 0, 0]
    """

    _parameter_constraints: dict = {**_PARAMS, "columns_per_model": _COLUMNS_PER_MODEL}

    def __init__(
        self,
        n_iter: int = 50,
        scoring: str | None = None,
        n_init: int = 1,
        n_bags: int = 1,
        bag_fraction: float = 0.5,
        random_state: int | np.random.RandomState | None = None,
        columns_per_model: int | str = "auto",
    ) -> None:
        self.n_iter = n_iter
        self.scoring = scoring
        self.n_init = n_init
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.random_state = random_state
        self.columns_per_model = columns_per_model

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> EnsembleSelectionClassifier:
        """Select base models greedily on ``(X, y)``."""
        blocks, y_encoded, sample_weight = self._fit_blocks(X, y, sample_weight)
        metric = _metric_for(self.scoring, "log_loss", self._task)

        def score(mean_blocks: np.ndarray) -> float:
            proba = self._as_probabilities(mean_blocks)
            return metric(y_encoded, proba, task=self._task, sample_weight=sample_weight)

        self._select(blocks, score, metric)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Weighted average of the blocks: ``(n, n_classes)``, or ``(n, n_labels)``."""
        blocks = self._predict_blocks(X)
        return self._as_probabilities(np.einsum("nmk,m->nk", blocks, self.weights_))


class EnsembleSelectionRegressor(_EnsembleSelectionMixin, _BlockRegressor):
    """Caruana et al. (2004) ensemble selection over base predictions (one column each).

    ``predict`` is ``X @ weights_``. ``sample_weight`` weights the rows in the score.

    Parameters and attributes are those of :class:`EnsembleSelectionClassifier`, without
    ``columns_per_model`` (one column per model) and with ``scoring=None`` meaning
    ``"rmse"``.

    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [2.0, 5.0], [3.0, 1.0]])
    >>> EnsembleSelectionRegressor(n_iter=2).fit(X, [1.0, 2.0, 3.0]).weights_
    array([1., 0.])
    """

    _parameter_constraints: dict = dict(_PARAMS)

    def __init__(
        self,
        n_iter: int = 50,
        scoring: str | None = None,
        n_init: int = 1,
        n_bags: int = 1,
        bag_fraction: float = 0.5,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_iter = n_iter
        self.scoring = scoring
        self.n_init = n_init
        self.n_bags = n_bags
        self.bag_fraction = bag_fraction
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> EnsembleSelectionRegressor:
        """Select base models greedily on ``(X, y)``."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, ensure_non_negative=True)
        metric = _metric_for(self.scoring, "rmse", "regression")

        def score(pred: np.ndarray) -> float:
            return metric(y, pred, task="regression", sample_weight=sample_weight)

        self._select(X, score, metric)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Weighted average of the base predictions, shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.weights_


register_meta_learner(
    "selection", classifier=EnsembleSelectionClassifier, regressor=EnsembleSelectionRegressor
)
