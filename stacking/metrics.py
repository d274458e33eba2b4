"""Metrics by scikit-learn scorer name, always reported in their natural direction.

Names are scikit-learn's scorer names without the ``neg_`` prefix (``log_loss``,
``accuracy``, ``roc_auc``, ``rmse``, ...); ``neg_log_loss`` and the long regression names
(``neg_root_mean_squared_error``) are accepted as aliases. Each :class:`Metric` knows
whether lower or higher is better, so a leaderboard never shows a negated loss.

Prediction representation, the same everywhere in tf-stacking:

* classification (binary, multiclass): ``y_true`` holds class *indices* ``0..C-1`` and
  ``y_pred`` is the ``(n, C)`` probability matrix;
* multilabel: ``y_true`` is the ``(n, L)`` 0/1 indicator matrix, ``y_pred`` the ``(n, L)``
  label probabilities;
* regression: ``y_true`` and ``y_pred`` are ``(n,)`` values.

Scores, per-fold scores and the bootstrap share one computation per metric. A metric that
is a (weighted) mean of per-row values (``log_loss``, ``brier_score``, ``accuracy``,
``mse``, ``rmse`` = sqrt of the mean, ``mae``, ``mape``) exposes :meth:`Metric.per_row`
and :meth:`Metric.aggregate`. :meth:`Metric.prepare` binds a metric to one prediction and
returns a :class:`PreparedMetric` that scores any reweighting of the rows: all rows, each
fold (one ``bincount`` by fold), or bootstrap resamples. ``roc_auc`` is rank based: one sort
per column at ``prepare``, then every fold or resample (a weight vector) costs O(n) per
column; ties and ``sample_weight`` are handled as :func:`sklearn.metrics.roc_auc_score`
handles them. The other metrics call scikit-learn, with labels computed once.

>>> get_metric("neg_log_loss").name, get_metric("log_loss").greater_is_better
('log_loss', False)
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from stacking.errors import ConfigError
from stacking.numeric import EPS_LOG, clip_proba, normalise_rows

# Elements of a (resamples or folds) x rows weight matrix handled at once: bounds memory.
_BLOCK = 1 << 22
# Equal-width bins of the expected calibration error and of the reliability diagrams.
CALIBRATION_BINS = 10
_ONE_CLASS = "Only one class is present in y_true. ROC AUC score is not defined in that case."
# A score on whole rows: scikit-learn's ``(y, pred, task, sample_weight) -> float`` shape.
Scorer: TypeAlias = Callable[..., float]
# Optional per-row weights, as scikit-learn's ``sample_weight``.
Weights: TypeAlias = np.ndarray | None


@dataclass(frozen=True)
class Metric:
    """A named score with a direction, computed from the representation above.

    Exactly one of ``_row`` (per-row values, averaged then ``_finish``-ed), ``_rank`` (the
    rank-based AUC), ``_binned`` (the calibration error) or ``_func`` (scikit-learn on the
    whole rows) defines the value.
    ``_labels`` makes ``_func`` receive predicted labels instead of probabilities.
    """

    name: str
    greater_is_better: bool
    tasks: frozenset[str]
    _func: Scorer | None = None
    _row: Callable[[np.ndarray, np.ndarray, str], np.ndarray] | None = None
    _finish: Callable[[np.ndarray], np.ndarray] | None = None
    _rank: bool = False
    _binned: bool = False
    _labels: bool = False

    def __call__(
        self, y_true: ArrayLike, y_pred: ArrayLike, *, task: str, sample_weight: Weights = None
    ) -> float:
        return self.prepare(y_true, y_pred, task=task).score(sample_weight)

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b

    @property
    def direction(self) -> str:
        return "higher is better" if self.greater_is_better else "lower is better"

    @property
    def decomposable(self) -> bool:
        """True when the score is ``aggregate(per_row(...))``: a weighted mean of rows."""
        return self._row is not None

    def per_row(self, y_true: ArrayLike, y_pred: ArrayLike, *, task: str) -> np.ndarray:
        """One value per row whose weighted mean, through :meth:`aggregate`, is the score.

        >>> m = get_metric("rmse")
        >>> m.aggregate(m.per_row([1.0, 2.0], [1.0, 4.0], task="regression"))
        1.4142135623730951
        """
        self._check_task(task)
        if self._row is None:
            raise TypeError(f"metric {self.name!r} is not a mean of per-row values; use prepare()")
        return self._row(np.asarray(y_true), np.asarray(y_pred), task)

    def aggregate(self, values: np.ndarray, sample_weight: Weights = None) -> float:
        """The score from :meth:`per_row` values: weighted mean, then e.g. sqrt for rmse."""
        return float(self._finish_mean(np.average(values, weights=sample_weight)))

    def prepare(self, y_true: ArrayLike, y_pred: ArrayLike, *, task: str) -> PreparedMetric:
        """Bind the metric to one prediction; the result scores any reweighting of rows."""
        self._check_task(task)
        y, pred = np.asarray(y_true), np.asarray(y_pred)
        if self._row is not None:
            return _RowMetric(self, self._row(y, pred, task))
        if self._rank:
            return _RankMetric(y, pred, task)
        if self._binned:
            return _BinnedMetric(y, pred, task)
        return _CallMetric(self, y, _predicted_labels(pred, task) if self._labels else pred, task)

    def _finish_mean(self, mean: np.ndarray) -> np.ndarray:
        return self._finish(mean) if self._finish is not None else mean

    def _check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ConfigError(
                f"metric {self.name!r} does not apply to a {task} task. "
                f"Received: metrics=[..., {self.name!r}, ...]; use one of "
                f"{sorted(n for n, m in _METRICS.items() if task in m.tasks)}"
            )


class PreparedMetric(abc.ABC):
    """A metric bound to one ``(y_true, y_pred)``: scores all rows, folds and resamples.

    Contract: every method gives the same number as the metric called on the selected rows
    (``sample_weight`` restricted to them); a resample's rows are ``idx[b]`` with
    repetition. Where scikit-learn's metric is undefined the result is what scikit-learn
    gives (NaN and an ``UndefinedMetricWarning`` for a one-class AUC), except in
    ``resample_scores``: an undefined resample is NaN (no AUC warning, no ``ValueError``)
    and the bootstrap leaves it out.
    """

    @abc.abstractmethod
    def score(self, sample_weight: Weights = None) -> float:
        """The metric over all rows."""

    @abc.abstractmethod
    def fold_scores(
        self, folds: np.ndarray, n_splits: int, sample_weight: Weights = None
    ) -> np.ndarray:
        """``(n_splits,)`` scores, fold ``k`` being the rows where ``folds == k``."""

    @abc.abstractmethod
    def resample_scores(self, idx: np.ndarray, sample_weight: Weights = None) -> np.ndarray:
        """``(B,)`` scores of the resamples ``idx`` (``(B, n)`` row indices in [0, n))."""

    def minus(self, other: PreparedMetric) -> PreparedMetric | None:
        """A prepared metric whose scores are ``self``'s minus ``other``'s, if one exists.

        It exists for a plain mean of per-row values (the mean of differences): a paired
        bootstrap then gathers one array per resample instead of two. ``None`` otherwise.
        """
        return None


class _RowMetric(PreparedMetric):
    """Means of per-row values: folds by one ``bincount``, resamples by one gather."""

    def __init__(self, metric: Metric, values: np.ndarray) -> None:
        self.metric, self.values = metric, values.astype(np.float64, copy=False)

    def score(self, sample_weight: Weights = None) -> float:
        return self.metric.aggregate(self.values, sample_weight)

    def fold_scores(
        self, folds: np.ndarray, n_splits: int, sample_weight: Weights = None
    ) -> np.ndarray:
        w = np.ones(len(self.values)) if sample_weight is None else np.asarray(sample_weight)
        total = np.bincount(folds, weights=self.values * w, minlength=n_splits)
        mean = total / np.bincount(folds, weights=w, minlength=n_splits)
        return self.metric._finish_mean(mean)

    def minus(self, other: PreparedMetric) -> PreparedMetric | None:
        if not isinstance(other, _RowMetric) or other.metric != self.metric:
            return None
        return None if self.metric._finish else _RowMetric(self.metric, self.values - other.values)

    def resample_scores(self, idx: np.ndarray, sample_weight: Weights = None) -> np.ndarray:
        # ``take(mode="clip")`` gathers the same values as ``values[idx]`` for indices in
        # [0, n) (all a resample holds) without fancy indexing's per-element bounds check:
        # 1.4x faster on 1e8 indices in evaluate's blocks, and bit-for-bit the same sums.
        if sample_weight is None:
            mean = np.take(self.values, idx, mode="clip").sum(axis=1) / idx.shape[1]
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            total = np.take(self.values * w, idx, mode="clip").sum(axis=1)
            mean = total / np.take(w, idx, mode="clip").sum(axis=1)
        return self.metric._finish_mean(mean)


class _CallMetric(PreparedMetric):
    """scikit-learn on the selected rows; predicted labels are computed once, up front."""

    def __init__(self, metric: Metric, y: np.ndarray, pred: np.ndarray, task: str) -> None:
        # prepare() routes here exactly the metrics that are defined by ``_func``.
        assert metric._func is not None, metric.name
        self.func, self.y, self.pred, self.task = metric._func, y, pred, task

    def _on(self, rows: np.ndarray | None, w: Weights) -> float:
        if rows is None:
            return float(self.func(self.y, self.pred, self.task, w))
        sub_w = None if w is None else w[rows]
        return float(self.func(self.y[rows], self.pred[rows], self.task, sub_w))

    def score(self, sample_weight: Weights = None) -> float:
        return self._on(None, sample_weight)

    def fold_scores(
        self, folds: np.ndarray, n_splits: int, sample_weight: Weights = None
    ) -> np.ndarray:
        w = None if sample_weight is None else np.asarray(sample_weight)
        order = np.argsort(folds, kind="stable")
        bounds = np.cumsum(np.bincount(folds, minlength=n_splits))[:-1]
        return np.array([self._on(rows, w) for rows in np.split(order, bounds)])

    def resample_scores(self, idx: np.ndarray, sample_weight: Weights = None) -> np.ndarray:
        w = None if sample_weight is None else np.asarray(sample_weight)
        out = np.empty(len(idx))
        for b, rows in enumerate(idx):
            try:
                out[b] = self._on(rows, w)
            except ValueError:  # a resample where the metric is undefined
                out[b] = np.nan
        return out


class _RankMetric(PreparedMetric):
    """ROC AUC (binary; ovr macro; multilabel macro) as a weighted Mann-Whitney statistic.

    Each column is sorted once; a score for row weights ``w`` is then, per column, the sum
    over tie groups of ``P_g * (N_below_g + N_g / 2)`` divided by ``P * N`` (``P``, ``N``
    the positive and negative weight): the area under scikit-learn's ROC curve, whose
    trapezoids give tied scores half credit. Rows of weight 0 do not count, as in
    :func:`sklearn.metrics.roc_curve`. A column without positive or negative weight has
    no AUC, and the macro average is then NaN, as scikit-learn's.

    Per column, ``negative`` marks the sorted rows of the other classes, and each positive
    row keeps two positions in the cumulative negative weight ``cn`` (``cn[i]`` = weight
    of the first ``i`` sorted negatives): its tie group's start ``lo`` and end ``hi``, so
    ``N_below_g + N_g / 2 = (cn[lo] + cn[hi]) / 2``. A score is then one gather, one
    cumulative sum and two small gathers per column.
    """

    def __init__(self, y: np.ndarray, pred: np.ndarray, task: str) -> None:
        if task == "binary":
            scores, positive = pred[:, 1:2], (y == 1)[:, None]
        elif task == "multiclass":  # scikit-learn requires rows summing to 1 for ovr
            scores = normalise_rows(pred)
            positive = y[:, None] == np.arange(pred.shape[1])
        else:
            scores, positive = pred, y.astype(bool)
        self.n = len(scores)
        by_column = np.ascontiguousarray(scores.T)  # a contiguous column sorts 1.3x faster
        self.columns = [self._column(by_column[j], positive[:, j]) for j in range(len(by_column))]

    def _column(self, scores: np.ndarray, positive: np.ndarray) -> tuple:
        order = np.argsort(scores)  # ties are grouped below: no need for a stable sort
        ranked = scores[order]
        new_group = np.r_[True, ranked[1:] != ranked[:-1]]
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:], self.n]
        group = np.cumsum(new_group) - 1
        sorted_positive = positive[order]
        rows = np.flatnonzero(sorted_positive)
        index = np.int32 if self.n < 2**31 else np.int64
        lo, hi = starts[group[rows]], ends[group[rows]]
        order_i, group_i, lo_i, hi_i = (a.astype(index) for a in (order, group, lo, hi))
        return order_i, ~sorted_positive, group_i, rows, lo_i, hi_i

    def _auc(self, weights: np.ndarray) -> np.ndarray:
        """Macro AUC of each row of ``weights`` (``(B, n)``); NaN where undefined."""
        per_column = np.empty((len(weights), len(self.columns)))
        cn = np.zeros((len(weights), self.n + 1))
        for j, (order, negative, _, rows, lo, hi) in enumerate(self.columns):
            w = weights[:, order]
            np.cumsum(w * negative, axis=1, out=cn[:, 1:])
            positive_w = w[:, rows]
            area = 0.5 * (positive_w * (cn[:, lo] + cn[:, hi])).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                area /= positive_w.sum(axis=1) * cn[:, -1]
            per_column[:, j] = np.where(np.isfinite(area), area, np.nan)
        return per_column.mean(axis=1)

    def _blocks(self, n_weights: int) -> list[slice]:
        step = max(1, _BLOCK // max(self.n, 1))
        return [slice(i, i + step) for i in range(0, n_weights, step)]

    def score(self, sample_weight: Weights = None) -> float:
        w = np.ones(self.n) if sample_weight is None else np.asarray(sample_weight, float)
        return float(_warn_undefined(self._auc(w[None, :]))[0])

    def fold_scores(
        self, folds: np.ndarray, n_splits: int, sample_weight: Weights = None
    ) -> np.ndarray:
        """All folds in one O(n) pass per column: the sorted rows regrouped fold by fold.

        A fold's rows in sorted order are the column's order restricted to the fold, so a
        stable sort by fold (radix, small integers) of the sorted positions lays the folds
        side by side; tie groups and the cumulative negative weight restart at each fold.
        """
        w = None if sample_weight is None else np.asarray(sample_weight, float)
        counts = np.bincount(folds, minlength=n_splits)
        bounds = np.r_[0, np.cumsum(counts)]
        fold_of = np.repeat(np.arange(n_splits), counts)
        fold_changes = fold_of[1:] != fold_of[:-1]
        small = folds.astype(np.int16 if n_splits < 2**15 else np.int64)
        per_column = np.empty((n_splits, len(self.columns)))
        cn = np.zeros(self.n + 1)
        for j, (order, negative, group, *_) in enumerate(self.columns):
            perm = np.argsort(small[order], kind="stable")
            negative, group = negative[perm], group[perm]
            # unweighted: the weights are 1, so counts (exact integers) replace their sums
            ws = None if w is None else w[order[perm]]
            np.cumsum(negative if ws is None else ws * negative, out=cn[1:])
            new = np.r_[True, (group[1:] != group[:-1]) | fold_changes]
            starts = np.flatnonzero(new)
            ends, at = np.r_[starts[1:], self.n], np.cumsum(new) - 1
            rows = np.flatnonzero(~negative)
            lo, hi, fold = starts[at[rows]], ends[at[rows]], fold_of[rows]
            below = cn[lo] + cn[hi] - 2 * cn[bounds[fold]]
            pw = None if ws is None else ws[rows]
            half = 0.5 * below if pw is None else 0.5 * pw * below
            area: np.ndarray = np.bincount(fold, weights=half, minlength=n_splits)
            positives = np.bincount(fold, weights=pw, minlength=n_splits)
            total = positives * np.diff(cn[bounds])
            with np.errstate(invalid="ignore", divide="ignore"):
                area = area / total  # not in place: no positive rows at all give an int array
            per_column[:, j] = np.where(np.isfinite(area), area, np.nan)
        return _warn_undefined(per_column.mean(axis=1))

    def resample_scores(self, idx: np.ndarray, sample_weight: Weights = None) -> np.ndarray:
        w = np.ones(self.n) if sample_weight is None else np.asarray(sample_weight, float)
        parts = []
        for part in self._blocks(len(idx)):
            block = idx[part]
            flat = (np.arange(len(block))[:, None] * self.n + block).ravel()
            counts = np.bincount(flat, minlength=block.size).reshape(block.shape)
            parts.append(self._auc(counts * w))
        return np.concatenate(parts)


class _BinnedMetric(PreparedMetric):
    """The expected calibration error: each row's bin and signed gap (confidence minus hit)
    are fixed at ``prepare``, so any reweighting of the rows is one ``bincount`` by bin
    (folds: by fold and bin; resamples: by resample and bin, in blocks of ``_BLOCK``)."""

    def __init__(self, y: np.ndarray, pred: np.ndarray, task: str) -> None:
        conf, hit = confidence_and_hit(y, pred, task)
        self.bins, self.gap, self.n = calibration_bin_index(conf), conf - hit, len(conf)

    def _weights(self, sample_weight: Weights) -> np.ndarray:
        return np.ones(self.n) if sample_weight is None else np.asarray(sample_weight, float)

    def score(self, sample_weight: Weights = None) -> float:
        return expected_calibration_error_from(self.bins, self.gap, self._weights(sample_weight))

    def fold_scores(
        self, folds: np.ndarray, n_splits: int, sample_weight: Weights = None
    ) -> np.ndarray:
        w = self._weights(sample_weight)
        key = np.asarray(folds) * CALIBRATION_BINS + self.bins
        size = n_splits * CALIBRATION_BINS
        total = np.bincount(key, weights=w * self.gap, minlength=size)
        gaps = np.abs(total.reshape(n_splits, CALIBRATION_BINS)).sum(axis=1)
        return gaps / np.bincount(folds, weights=w, minlength=n_splits)

    def resample_scores(self, idx: np.ndarray, sample_weight: Weights = None) -> np.ndarray:
        w = self._weights(sample_weight)
        weighted_gap = w * self.gap
        parts = []
        step = max(1, _BLOCK // max(self.n, 1))
        for start in range(0, len(idx), step):
            block = idx[start : start + step]
            key = np.arange(len(block))[:, None] * CALIBRATION_BINS + self.bins[block]
            total = np.bincount(
                key.ravel(),
                weights=weighted_gap[block].ravel(),
                minlength=len(block) * CALIBRATION_BINS,
            )
            gaps = np.abs(total.reshape(len(block), CALIBRATION_BINS)).sum(axis=1)
            parts.append(gaps / w[block].sum(axis=1))
        return np.concatenate(parts) if parts else np.empty(0)


def _warn_undefined(values: np.ndarray) -> np.ndarray:
    """scikit-learn's warning for an AUC that is not defined (NaN), once per call."""
    if np.isnan(values).any():
        warnings.warn(_ONE_CLASS, UndefinedMetricWarning, stacklevel=3)
    return values


def _predicted_labels(y_pred: np.ndarray, task: str) -> np.ndarray:
    if task == "multilabel":
        return (y_pred >= 0.5).astype(int)
    return np.argmax(y_pred, axis=1)


# Per-row values. Probabilities are computed in float64 whatever the input dtype.


def _log_loss_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    p = p.astype(np.float64, copy=False)
    if task == "multilabel":
        p = clip_proba(p, EPS_LOG)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
    p = clip_proba(p, EPS_LOG, upper=False)
    rows = np.arange(len(y))
    return -np.log(p[rows, y] / p.sum(axis=1))  # renormalised, as scikit-learn requires


def _brier_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    p = p.astype(np.float64, copy=False)
    if task == "binary":  # scikit-learn's binary Brier: the positive column only
        return (p[:, 1] - y) ** 2
    diff = p - y if task == "multilabel" else p.copy()
    if task == "multiclass":
        diff[np.arange(len(y)), y] -= 1.0
    return (diff**2).sum(axis=1)


def _accuracy_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    if task == "multilabel":
        return (_predicted_labels(p, task) == y).all(axis=1).astype(np.float64)
    return (np.argmax(p, axis=1) == y).astype(np.float64)


def _squared_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    return (y - p) ** 2


def _absolute_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    return np.abs(p - y)


def _percentage_rows(y: np.ndarray, p: np.ndarray, task: str) -> np.ndarray:
    return np.abs(p - y) / np.maximum(np.abs(y), np.finfo(np.float64).eps)


# Module-level functions bound with ``partial`` rather than closures: the metric table is
# built at import, and a mutation tester can only switch code that runs after it. The three
# builders below run only at import (``no mutate``); every metric's value is tested.


def _label_score(
    func: Scorer, kwargs: dict[str, Any], y: np.ndarray, labels: np.ndarray, task: str, w: Weights
) -> float:
    # Binary labels are the indices 0/1, so scikit-learn's default pos_label=1 is class 1.
    return func(y, labels, sample_weight=w, **kwargs)


def _regression_score(func: Scorer, y: np.ndarray, p: np.ndarray, task: str, w: Weights) -> float:
    return func(y, p, sample_weight=w)


def _label_metric(func: Scorer, **kwargs: Any) -> Scorer:  # pragma: no mutate block
    return partial(_label_score, func, kwargs)


def _regression(func: Scorer) -> Scorer:  # pragma: no mutate block
    return partial(_regression_score, func)


_CLS = frozenset({"binary", "multiclass", "multilabel"})
_SINGLE = frozenset({"binary", "multiclass"})
_REG = frozenset({"regression"})


def calibration_bin_index(proba: np.ndarray, n_bins: int = CALIBRATION_BINS) -> np.ndarray:
    """The equal-width bin of each probability: bin ``k`` holds ``[k/n_bins, (k+1)/n_bins)``,
    the last bin also holds 1.0 (values outside [0, 1] fall in the first/last bin).

    One function for the ``ece`` metric and the reliability plots, so a diagram's bins are
    the bins its ECE sums over.

    >>> calibration_bin_index(np.array([0.0, 0.05, 0.1, 0.95, 1.0])).tolist()
    [0, 0, 1, 9, 9]
    """
    inner = np.arange(1, n_bins) / n_bins  # 3 / 10 is 0.3; linspace gives 0.30000000000000004
    return np.clip(np.digitize(proba, inner), 0, n_bins - 1)


def confidence_and_hit(y: ArrayLike, p: ArrayLike, task: str) -> tuple[np.ndarray, np.ndarray]:
    """What calibration is measured on: binary, the positive class's probability and whether
    the row is positive; multiclass, the top class's probability and whether it is right."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y)
    if task == "binary":
        return p[:, 1], (y == 1).astype(np.float64)
    return p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)


def expected_calibration_error(
    y: ArrayLike,
    p: ArrayLike,
    task: str,
    sample_weight: Weights = None,
    n_bins: int = CALIBRATION_BINS,
) -> float:
    """ECE: the (weighted) share of rows in each bin times the gap between the bin's mean
    confidence and its observed frequency, summed over the bins of
    :func:`calibration_bin_index` (Naeini et al. 2015; Guo et al. 2017 for the top class).

    >>> expected_calibration_error([1, 0], np.array([[0.2, 0.8], [0.6, 0.4]]), "binary")
    0.3
    """
    conf, hit = confidence_and_hit(y, p, task)
    w = np.ones(len(conf)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return expected_calibration_error_from(calibration_bin_index(conf, n_bins), conf - hit, w)


def expected_calibration_error_from(bins: np.ndarray, gap: np.ndarray, w: np.ndarray) -> float:
    """ECE from each row's bin, signed gap ``confidence - hit`` and weight."""
    return float(np.abs(np.bincount(bins, weights=w * gap)).sum() / w.sum())


def pairwise_disagreement(labels: list[np.ndarray]) -> np.ndarray:
    """``(m, m)`` share of rows where two models' predicted labels differ (multilabel: any
    label differs); 0 on the diagonal. Diversity that correlation of probabilities misses:
    two models can correlate highly and still change each other's decision on many rows.

    >>> pairwise_disagreement([np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1])]).tolist()
    [[0.0, 0.5], [0.5, 0.0]]
    """
    rows = [np.asarray(a).reshape(len(a), -1) for a in labels]
    out = np.zeros((len(rows), len(rows)))
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            out[i, j] = out[j, i] = float((rows[i] != rows[j]).any(axis=1).mean())
    return out


def pairwise_correlation(blocks: list[np.ndarray]) -> np.ndarray:
    """``(m, m)`` Pearson correlation of models' predictions, averaged over their columns
    (each block is ``(n, k)`` with the same ``k``); NaN where a column is constant."""
    columns = [np.asarray(b, dtype=np.float64).reshape(len(b), -1) for b in blocks]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_column = [
            np.corrcoef(np.array([c[:, k] for c in columns])) for k in range(columns[0].shape[1])
        ]
    return np.mean(per_column, axis=0)


def _labels(
    name: str, tasks: frozenset[str], func: Scorer, **kwargs: Any
) -> Metric:  # pragma: no mutate block
    return Metric(name, True, tasks, _func=_label_metric(func, **kwargs), _labels=True)


_METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("log_loss", False, _CLS, _row=_log_loss_rows),
        Metric("roc_auc", True, _CLS, _rank=True),
        Metric("brier_score", False, _CLS, _row=_brier_rows),
        Metric("accuracy", True, _CLS, _row=_accuracy_rows),
        Metric("ece", False, _SINGLE, _binned=True),
        _labels("balanced_accuracy", _SINGLE, skm.balanced_accuracy_score),
        _labels("f1", frozenset({"binary"}), skm.f1_score, average="binary"),
        _labels("f1_macro", _CLS, skm.f1_score, average="macro"),
        _labels("f1_micro", _CLS, skm.f1_score, average="micro"),
        _labels("f1_weighted", _CLS, skm.f1_score, average="weighted"),
        _labels("matthews_corrcoef", _SINGLE, skm.matthews_corrcoef),
        Metric("rmse", False, _REG, _row=_squared_rows, _finish=np.sqrt),
        Metric("mse", False, _REG, _row=_squared_rows),
        Metric("mae", False, _REG, _row=_absolute_rows),
        Metric("r2", True, _REG, _func=_regression(skm.r2_score)),
        Metric("mape", False, _REG, _row=_percentage_rows),
        Metric("explained_variance", True, _REG, _func=_regression(skm.explained_variance_score)),
    ]
}

_ALIASES = {
    "expected_calibration_error": "ece",
    "root_mean_squared_error": "rmse",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "mean_absolute_percentage_error": "mape",
    "brier_score_loss": "brier_score",
    "roc_auc_ovr": "roc_auc",
}


def get_metric(name: str) -> Metric:
    """Look a metric up by scorer name; ``neg_`` prefixes and long names are accepted."""
    key = name.removeprefix("neg_")
    key = _ALIASES.get(key, key)
    try:
        return _METRICS[key]
    except KeyError:
        raise ConfigError(
            f"unknown metric {name!r}. Use a scikit-learn scorer name, one of {sorted(_METRICS)}"
        ) from None


def default_metrics(task: str) -> list[str]:
    """The metrics reported when the config names none; the first is the primary one."""
    if task == "regression":
        return ["rmse", "mae", "r2"]
    if task == "multilabel":
        return ["log_loss", "roc_auc", "accuracy"]
    return ["log_loss", "accuracy", "roc_auc"]


def available_metrics() -> list[str]:
    return sorted(_METRICS)
