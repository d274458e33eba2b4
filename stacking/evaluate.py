"""Scores, the leaderboard, and a paired bootstrap of each ensemble against the best base.

Every entry (base model, mean of base models, meta candidate) is scored on its
out-of-fold predictions over all rows and per fold. The paired bootstrap resamples rows
(seeded) and recomputes the primary metric's difference between an entry and the best
base model on the same resample; its 2.5 and 97.5 percentiles are the 95 % interval shown
on the leaderboard. An interval that excludes 0 says the gain is not resampling noise
(it says nothing about the variance from refitting the models).

Each metric is prepared once per prediction (:meth:`stacking.metrics.Metric.prepare`):
the overall score, the per-fold scores and every resample come from the same per-row
values or sorted columns. The best base model is prepared and resampled once for the
whole leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stacking.metrics import Metric, PreparedMetric, get_metric

# Resample rows drawn at once (a block of the (n_resamples, n) index matrix): bounds memory.
# 2**20 int32 indices (4 MB) and their gathered float64 values (8 MB) stay in the CPU's
# caches; with 2**22 the gathers of a 100,000-row bootstrap took 1.4-2.5x as long.
_BLOCK = 1 << 20


@dataclass
class Entry:
    """One leaderboard row's predictions and scores."""

    name: str
    role: str  # "base" | "base_mean" | "meta"
    level: int
    oof: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    fold_scores: dict[str, list[float]] = field(default_factory=dict)


def score_entry(entry: Entry, y, plan, *, task, metrics: list[str], sample_weight=None) -> None:
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
    metric: Metric, y, pred_a, pred_b, *, task, n_resamples=1000, seed=0, sample_weight=None
) -> tuple[float, float, float]:
    """Score difference ``a - b`` on all rows, and its 95 % paired-bootstrap interval.

    Resample ``b`` draws rows ``rng.integers(0, n, size=n)`` in sequence from
    ``default_rng(seed)``; a resample where the metric is undefined (e.g. one class for
    ``roc_auc``) is left out of the percentiles.

    >>> delta, low, high = paired_bootstrap(get_metric("log_loss"), y, ens, best, task="multiclass")
    """
    entry, base = Entry("a", "meta", 0, pred_a), Entry("b", "base", 0, pred_b)
    kwargs = dict(n_resamples=n_resamples, seed=seed, sample_weight=sample_weight)
    return _compare_with_base([entry], base, y, task=task, metric=metric, **kwargs)[id(entry)]


def _resample_scores(
    prepared: list[PreparedMetric], n: int, n_resamples: int, seed: int, sample_weight
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
    entries: list[Entry], base: Entry, y, *, task, metric: Metric, n_resamples, seed, sample_weight
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
    resample = dict(n=len(y), n_resamples=n_resamples, seed=seed, sample_weight=sample_weight)
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


def best_of(entries: list[Entry], metric: Metric) -> Entry:
    best = entries[0]
    for entry in entries[1:]:
        if metric.better(entry.scores[metric.name], best.scores[metric.name]):
            best = entry
    return best


def leaderboard(
    entries: list[Entry],
    y,
    *,
    task: str,
    metrics: list[str],
    selected: str,
    n_resamples: int = 1000,
    seed: int = 0,
    sample_weight=None,
) -> pd.DataFrame:
    """One row per entry, best first by the primary metric (``metrics[0]``).

    ``delta_vs_best_base`` and its interval ``ci_low``/``ci_high`` compare each non-base
    entry with the best base model on the primary metric (negative is better for a loss).
    """
    primary = get_metric(metrics[0])
    best_base = best_of([e for e in entries if e.role == "base"], primary)
    y = np.asarray(y)
    compared = [e for e in entries if e.role != "base"]
    intervals = {}
    if compared:
        intervals = _compare_with_base(
            compared,
            best_base,
            y,
            task=task,
            metric=primary,
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
        delta, low, high = intervals.get(id(entry), (np.nan, np.nan, np.nan))
        row.update(delta_vs_best_base=delta, ci_low=low, ci_high=high)
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
