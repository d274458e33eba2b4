"""Scores, the leaderboard, and a paired interval of each ensemble against the best base.

Every entry (base model, mean of base models, meta candidate) is scored on its
out-of-fold predictions over all rows and per fold. The leaderboard's 95 % interval of
the primary metric's difference between an entry and the best base model is computed on
the same rows for both (paired), by one of two methods (column ``ci_method``):

* ``bootstrap``: resample rows (seeded), recompute the difference on each resample, take
  the 2.5 and 97.5 percentiles. O(resamples x rows): about 10 s at 1M rows.
* analytic, O(rows): ``t`` for a metric that is a mean of per-row values (log loss,
  accuracy, Brier, squared/absolute error; rmse through the delta method): the mean
  difference ± t(0.975, n-1) standard errors of the per-row differences; ``delong`` for
  ROC AUC: DeLong's paired variance from each row's placement values (a macro average
  over columns adds their covariances row by row), with a normal quantile.

``interval="auto"`` (the default) uses the bootstrap up to ``bootstrap_max_rows`` rows,
where it is cheap and makes no normality assumption, and the analytic interval above,
where the central limit theorem makes both agree (tests/test_intervals.py checks widths
and coverage); a metric without a closed form (f1, r2 …) or a weighted AUC always uses
the bootstrap. An interval that excludes 0 says the gain is not resampling noise (it says
nothing about the variance from refitting the models).

Each metric is prepared once per prediction (:meth:`stacking.metrics.Metric.prepare`):
the overall score, the per-fold scores and every resample come from the same per-row
values or sorted columns. The best base model is prepared and resampled once for the
whole leaderboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # a type only: scoring needs no fold machinery at run time
    from stacking.folds import FoldPlan

from stacking.metrics import Metric, PreparedMetric, Weights, get_metric
from stacking.numeric import normalise_rows

# Resample rows drawn at once (a block of the (n_resamples, n) index matrix): bounds memory.
# 2**20 int32 indices (4 MB) and their gathered float64 values (8 MB) stay in the CPU's
# caches; with 2**22 the gathers of a 100,000-row bootstrap took 1.4-2.5x as long.
_BLOCK = 1 << 20
INTERVAL_METHODS = ("auto", "bootstrap", "analytic")
# auto: the bootstrap up to this many rows, an analytic interval above (see the docstring).
BOOTSTRAP_MAX_ROWS = 20_000


@dataclass
class Entry:
    """One leaderboard row's predictions and scores."""

    name: str
    role: str  # "base" | "base_mean" | "meta"
    level: int
    oof: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    fold_scores: dict[str, list[float]] = field(default_factory=dict)


def score_entry(
    entry: Entry,
    y: ArrayLike,
    plan: FoldPlan,
    *,
    task: str,
    metrics: list[str],
    sample_weight: Weights = None,
) -> None:
    """Fill ``entry.scores`` (all rows) and ``entry.fold_scores`` (one per fold of ``plan``).

    Each metric is prepared once for the entry (per-row values, or the AUC's sorted
    columns) and then scored on all rows and on every fold from that.
    """
    y = np.asarray(y)
    for name in metrics:
        metric = get_metric(name)
        prepared = metric.prepare(y, entry.oof, task=task)
        entry.scores[metric.name] = prepared.score(sample_weight)
        folds = prepared.fold_scores(plan.folds, plan.n_splits, sample_weight)
        entry.fold_scores[metric.name] = [float(v) for v in folds]


def paired_bootstrap(
    metric: Metric,
    y: ArrayLike,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    *,
    task: str,
    n_resamples: int = 1000,
    seed: int = 0,
    sample_weight: Weights = None,
) -> tuple[float, float, float]:
    """Score difference ``a - b`` on all rows, and its 95 % paired-bootstrap interval.

    Resample ``b`` draws rows ``rng.integers(0, n, size=n)`` in sequence from
    ``default_rng(seed)``; a resample where the metric is undefined (e.g. one class for
    ``roc_auc``) is left out of the percentiles.

    >>> delta, low, high = paired_bootstrap(get_metric("log_loss"), y, ens, best, task="multiclass")
    """
    entry, base = Entry("a", "meta", 0, pred_a), Entry("b", "base", 0, pred_b)
    kwargs: dict[str, Any] = dict(n_resamples=n_resamples, seed=seed, sample_weight=sample_weight)
    return _compare_with_base([entry], base, y, task=task, metric=metric, **kwargs)[id(entry)]


def _resample_scores(
    prepared: list[PreparedMetric], n: int, n_resamples: int, seed: int, sample_weight: Weights
) -> np.ndarray:
    """``(len(prepared), n_resamples)`` scores, all on the same seeded resamples.

    Indices are drawn in blocks of resamples (bounded memory); the stream equals one
    ``rng.integers(0, n, size=(n_resamples, n))`` call.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((len(prepared), n_resamples))
    step = max(1, _BLOCK // max(n, 1))
    # below 2**31 rows int32 draws the same values as int64, with half the memory traffic
    dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_resamples, step):
        idx = rng.integers(0, n, size=(min(step, n_resamples - start), n), dtype=dtype)
        for i, p in enumerate(prepared):
            out[i, start : start + len(idx)] = p.resample_scores(idx, sample_weight)
    return out


def _interval(delta: float, diffs: np.ndarray) -> tuple[float, float, float]:
    """``delta`` and the 2.5/97.5 percentiles of the defined resample differences."""
    if diffs.size == 0 or np.isnan(diffs).all():
        return delta, float("nan"), float("nan")
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return delta, float(low), float(high)


def _compare_with_base(
    entries: list[Entry],
    base: Entry,
    y: ArrayLike,
    *,
    task: str,
    metric: Metric,
    n_resamples: int,
    seed: int,
    sample_weight: Weights,
) -> dict[int, tuple[float, float, float]]:
    """``paired_bootstrap`` of every entry against ``base``, keyed by ``id(entry)``.

    The base is prepared and resampled once. Per-row metrics are small once prepared, so
    all entries share one pass over the resamples; a rank metric holds sorted columns, so
    its entries go one at a time (memory of one entry, the resamples drawn again).
    """
    y = np.asarray(y)
    prepared_base = metric.prepare(y, base.oof, task=task)
    base_score = prepared_base.score(sample_weight)
    groups = [entries] if metric.decomposable else [[e] for e in entries]
    resample: dict[str, Any] = dict(
        n=len(y), n_resamples=n_resamples, seed=seed, sample_weight=sample_weight
    )
    base_scores, out = None, {}
    for group in groups:
        prepared = [metric.prepare(y, e.oof, task=task) for e in group]
        direct = [d for p in prepared if (d := p.minus(prepared_base)) is not None]
        if len(direct) == len(prepared):  # a plain mean: resample the differences
            diffs = _resample_scores(direct, **resample)
        else:
            with_base = prepared + ([prepared_base] if base_scores is None else [])
            scores = _resample_scores(with_base, **resample)
            base_scores = scores[len(prepared)] if base_scores is None else base_scores
            diffs = scores[: len(prepared)] - base_scores
        for entry, p, row in zip(group, prepared, diffs):
            out[id(entry)] = _interval(float(p.score(sample_weight) - base_score), row)
    return out


def _placements(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """DeLong's placement of each row: for a positive, the share of negatives scored
    below it (ties count half); for a negative, the share of positives scored above it.
    One sort (ties are grouped after it, so it need not be stable): O(n log n)."""
    order = np.argsort(np.ascontiguousarray(scores))
    ranked, pos = scores[order], positive[order]
    new_group = np.r_[True, ranked[1:] != ranked[:-1]]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1
    lo, hi = starts[group], np.r_[starts[1:], len(ranked)][group]
    cn, cp = np.r_[0, np.cumsum(~pos)], np.r_[0, np.cumsum(pos)]
    m, n = cp[-1], cn[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        place = np.where(pos, (cn[lo] + cn[hi]) / (2 * n), (m - (cp[lo] + cp[hi]) / 2) / m)
    out = np.empty(len(ranked))
    out[order] = place
    return out


def _auc_columns(y: np.ndarray, pred: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """The scores ``(J, n)`` and positive masks ``(n, J)`` whose macro AUC is ``roc_auc``."""
    if task == "binary":
        scores, positive = pred[:, 1:2], (y == 1)[:, None]
    elif task == "multiclass":
        scores, positive = normalise_rows(pred), y[:, None] == np.arange(pred.shape[1])
    else:
        scores, positive = pred, y.astype(bool)
    return np.ascontiguousarray(scores.T), positive  # a contiguous column sorts faster


def _delong(y: ArrayLike, pred: ArrayLike, *, task: str) -> tuple[float, np.ndarray] | None:
    """The macro AUC and the per-row terms of its DeLong variance (see
    :func:`delong_components`); None when a column has < 2 positives or negatives."""
    columns, positive = _auc_columns(np.asarray(y), np.asarray(pred, dtype=float), task)
    total, aucs = np.zeros(positive.shape[0]), []
    for j, scores in enumerate(columns):
        pos = positive[:, j]
        m, k = int(pos.sum()), int(len(pos) - pos.sum())
        if m < 2 or k < 2:
            return None
        place = _placements(scores, pos)
        auc = place[pos].mean()
        scale = np.where(pos, 1 / np.sqrt(m * (m - 1)), 1 / np.sqrt(k * (k - 1)))
        total += (place - auc) * scale
        aucs.append(auc)
    return float(np.mean(aucs)), total / len(columns)


def delong_components(y: ArrayLike, pred: ArrayLike, *, task: str) -> np.ndarray | None:
    """Per-row terms ``(n,)`` of the macro AUC's DeLong variance, or None (a column with
    fewer than two positives or negatives).

    For one column, the row term is ``(V - AUC) / sqrt(m (m - 1))`` for a positive and
    ``(V - AUC) / sqrt(k (k - 1))`` for a negative (``V`` its placement, ``m``/``k`` the
    positives/negatives), so that the sum of squares is DeLong's ``S10/m + S01/k``; the
    difference of two predictions' terms gives the paired variance, their covariance
    included. A macro average over columns averages the terms row by row.
    """
    found = _delong(y, pred, task=task)
    return None if found is None else found[1]


def _terms(
    metric: Metric, y: np.ndarray, pred: np.ndarray, *, task: str, sample_weight: Weights
) -> tuple[float, np.ndarray] | None:
    """The score and its per-row linearisation, for an analytic interval; None without
    a closed form. A mean of rows: ``f'(mean) (value - mean)``, ``f`` the metric's finish
    (identity, or sqrt for rmse: the delta method). ROC AUC: DeLong's terms."""
    if metric.decomposable:
        values = metric.per_row(y, pred, task=task)
        mean = float(np.average(values, weights=sample_weight))
        if metric.name == "rmse" and mean <= 0:
            return None
        slope = 0.5 / np.sqrt(mean) if metric.name == "rmse" else 1.0
        return metric.aggregate(values, sample_weight), slope * (values - mean)
    if metric.name == "roc_auc" and sample_weight is None:
        return _delong(y, pred, task=task)
    return None


def _combine(
    a: tuple[float, np.ndarray], b: tuple[float, np.ndarray], metric: Metric, sample_weight: Weights
) -> tuple[float, float, float, str] | None:
    from scipy import stats

    delta, diff, n = a[0] - b[0], a[1] - b[1], len(a[1])
    if metric.decomposable:
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        # the weighted mean's linearised variance, n/(n-1) corrected: s^2/n unweighted
        se = np.sqrt(n / (n - 1) * np.sum((w * diff) ** 2)) / w.sum()
        quantile, method = stats.t.ppf(0.975, n - 1), "t"
    else:
        se, quantile, method = np.sqrt(np.sum(diff**2)), stats.norm.ppf(0.975), "delong"
    if not np.isfinite(se):
        return None
    return float(delta), float(delta - quantile * se), float(delta + quantile * se), method


def analytic_interval(
    metric: Metric,
    y: ArrayLike,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    *,
    task: str,
    sample_weight: Weights = None,
) -> tuple[float, float, float, str] | None:
    """Score difference ``a - b``, its 95 % analytic interval and the method (``t`` or
    ``delong``), in O(n); None where there is no closed form (then use the bootstrap).

    >>> delta, low, high, method = analytic_interval(get_metric("log_loss"), y, a, b,
    ...                                              task="multiclass")
    """
    y = np.asarray(y)
    a = _terms(metric, y, pred_a, task=task, sample_weight=sample_weight)
    b = _terms(metric, y, pred_b, task=task, sample_weight=sample_weight)
    return None if a is None or b is None else _combine(a, b, metric, sample_weight)


def _intervals(
    compared: list[Entry],
    base: Entry,
    y: np.ndarray,
    *,
    task: str,
    metric: Metric,
    method: str,
    **bootstrap: Any,
) -> dict[int, tuple[float, float, float, str]]:
    """Each compared entry's ``(delta, low, high, ci_method)`` against ``base`` (whose
    terms are computed once)."""
    out: dict[int, tuple[float, float, float, str]] = {}
    weights = bootstrap["sample_weight"]
    base_terms = None
    if method == "analytic":
        base_terms = _terms(metric, y, base.oof, task=task, sample_weight=weights)
    if base_terms is not None:
        for e in compared:
            terms = _terms(metric, y, e.oof, task=task, sample_weight=weights)
            found = None if terms is None else _combine(terms, base_terms, metric, weights)
            if found is not None:
                out[id(e)] = found
    rest = [e for e in compared if id(e) not in out]
    if rest:
        label = "bootstrap" if bootstrap["n_resamples"] > 0 else "none"
        found_b = _compare_with_base(rest, base, y, task=task, metric=metric, **bootstrap)
        out.update({key: (*value, label) for key, value in found_b.items()})
    return out


def repeat_interval(
    metric: Metric,
    y: np.ndarray,
    repeats: list[np.ndarray],
    base: np.ndarray,
    *,
    task: str,
    method: str,
    n_resamples: int,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[float, float, float, str]:
    """An entry's difference from ``base`` averaged over its repeats (one OOF prediction
    per split of ``meta.repeats``), with its 95 % interval and the method.

    Every repeat is scored on the same rows as the base: the bootstrap resamples rows once
    and averages the R differences on each resample; the analytic interval (``method``
    ``analytic``, where a closed form exists) averages the R per-row linearisations before
    the usual t or DeLong step. Equal repeats (a combiner that learns nothing) give the
    single split's interval.
    """
    y = np.asarray(y)
    if method == "analytic":
        base_terms = _terms(metric, y, base, task=task, sample_weight=sample_weight)
        terms = [_terms(metric, y, r, task=task, sample_weight=sample_weight) for r in repeats]
        if base_terms is not None and all(t is not None for t in terms):
            found = [t for t in terms if t is not None]
            mean_terms = (
                float(np.mean([t[0] for t in found])),
                np.mean([t[1] for t in found], axis=0),
            )
            combined = _combine(mean_terms, base_terms, metric, sample_weight)
            if combined is not None:
                return combined
    prepared = [metric.prepare(y, r, task=task) for r in repeats]
    prepared_base = metric.prepare(y, base, task=task)
    delta = float(
        np.mean([p.score(sample_weight) for p in prepared]) - prepared_base.score(sample_weight)
    )
    if n_resamples == 0:
        return delta, float("nan"), float("nan"), "none"
    scores = _resample_scores([*prepared, prepared_base], len(y), n_resamples, seed, sample_weight)
    diffs = scores[: len(prepared)].mean(axis=0) - scores[len(prepared)]
    return (*_interval(delta, diffs), "bootstrap")


def interval_method(interval: str, n_rows: int, bootstrap_max_rows: int) -> str:
    """``bootstrap`` or ``analytic`` for ``interval`` (``auto`` decides by the rows)."""
    if interval not in INTERVAL_METHODS:
        raise ValueError(f"interval must be one of {INTERVAL_METHODS}. Received: {interval!r}")
    if interval == "auto":
        return "bootstrap" if n_rows <= bootstrap_max_rows else "analytic"
    return interval


def repeat_spread(values: Sequence[float]) -> float:
    """Standard deviation over repeats; exactly 0 when every repeat scored the same (a
    mean of equal floats can round, and a fixed entry must show no spread). The
    leaderboard and the MLflow run both use it, so they cannot disagree."""
    return 0.0 if len(set(values)) <= 1 else float(np.std(values))


def best_of(entries: list[Entry], metric: Metric) -> Entry:
    best = entries[0]
    for entry in entries[1:]:
        if metric.better(entry.scores[metric.name], best.scores[metric.name]):
            best = entry
    return best


def leaderboard(
    entries: list[Entry],
    y: ArrayLike,
    *,
    task: str,
    metrics: list[str],
    selected: str,
    n_resamples: int = 1000,
    seed: int = 0,
    sample_weight: Weights = None,
    interval: str = "auto",
    bootstrap_max_rows: int = BOOTSTRAP_MAX_ROWS,
) -> pd.DataFrame:
    """One row per entry, best first by the primary metric (``metrics[0]``).

    ``delta_vs_best_base`` and its interval ``ci_low``/``ci_high`` compare each non-base
    entry with the best base model on the primary metric (negative is better for a loss);
    ``ci_method`` says how the interval was computed (``bootstrap``, ``t``, ``delong``, or
    ``none`` with ``n_resamples=0``); see the module docstring for ``interval``.
    """
    primary = get_metric(metrics[0])
    best_base = best_of([e for e in entries if e.role == "base"], primary)
    y = np.asarray(y)
    compared = [e for e in entries if e.role != "base"]
    method = interval_method(interval, len(y), bootstrap_max_rows)
    if n_resamples == 0:  # bootstrap: 0 turns the intervals off, whatever the method
        method = "bootstrap"
    intervals = {}
    if compared:
        intervals = _intervals(
            compared,
            best_base,
            y,
            task=task,
            metric=primary,
            method=method,
            n_resamples=n_resamples,
            seed=seed,
            sample_weight=sample_weight,
        )
    rows = []
    for entry in entries:
        row = {"model": entry.name, "role": entry.role, "level": entry.level}
        for name in metrics:
            m = get_metric(name)
            row[f"cv_{m.name}"] = entry.scores[m.name]
        row[f"cv_{primary.name}_std"] = float(np.std(entry.fold_scores[primary.name]))
        delta, low, high, how = intervals.get(id(entry), (np.nan, np.nan, np.nan, ""))
        row.update(delta_vs_best_base=delta, ci_low=low, ci_high=high, ci_method=how)
        row["selected"] = entry.name == selected
        rows.append(row)
    frame = pd.DataFrame(rows)
    key = f"cv_{primary.name}"
    frame = frame.sort_values(key, ascending=not primary.greater_is_better, kind="stable")
    return frame.reset_index(drop=True)


def format_leaderboard(frame: pd.DataFrame, primary: Metric) -> str:
    """A plain-text table for the terminal, with the metric's direction in the title."""
    shown = frame.copy()
    shown["selected"] = shown["selected"].map({True: "*", False: ""})
    title = f"leaderboard (out-of-fold; {primary.name}: {primary.direction})"
    body = shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
    return f"{title}\n{body}"
