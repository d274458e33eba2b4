"""Scores, the leaderboard, and a paired bootstrap of each ensemble against the best base.

Every entry (base model, mean of base models, meta candidate) is scored on its
out-of-fold predictions over all rows and per fold. The paired bootstrap resamples rows
(seeded) and recomputes the primary metric's difference between an entry and the best
base model on the same resample; its 2.5 and 97.5 percentiles are the 95 % interval shown
on the leaderboard. An interval that excludes 0 says the gain is not resampling noise
(it says nothing about the variance from refitting the models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from stacking.metrics import Metric, get_metric

_EPS = 1e-15
# Metrics that are means of per-row values: resampled in one vectorised step.
_PER_ROW = {"log_loss", "brier_score", "accuracy", "mse", "rmse", "mae"}


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
    for name in metrics:
        metric = get_metric(name)
        entry.scores[metric.name] = metric(y, entry.oof, task=task, sample_weight=sample_weight)
        fold_scores = []
        for k in range(plan.n_splits):
            rows = plan.test_index(k)
            w = None if sample_weight is None else sample_weight[rows]
            fold_scores.append(metric(y[rows], entry.oof[rows], task=task, sample_weight=w))
        entry.fold_scores[metric.name] = fold_scores


def _per_row(metric: Metric, y, pred, task) -> np.ndarray:
    if metric.name == "log_loss":
        if task == "multilabel":
            p = np.clip(pred, _EPS, 1 - _EPS)
            return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
        p = np.clip(pred, _EPS, 1.0)
        p = p / p.sum(axis=1, keepdims=True)  # as metrics.log_loss does
        return -np.log(p[np.arange(len(y)), y])
    if metric.name == "brier_score":
        if task == "binary":
            return (pred[:, 1] - y) ** 2
        onehot = y if task == "multilabel" else np.eye(pred.shape[1])[y]
        return ((pred - onehot) ** 2).sum(axis=1)
    if metric.name == "accuracy":
        if task == "multilabel":
            return ((pred >= 0.5).astype(int) == y).all(axis=1).astype(float)
        return (pred.argmax(axis=1) == y).astype(float)
    if metric.name == "mae":
        return np.abs(pred - y)
    return (pred - y) ** 2  # mse, rmse


def paired_bootstrap(
    metric: Metric, y, pred_a, pred_b, *, task, n_resamples=1000, seed=0, sample_weight=None
) -> tuple[float, float, float]:
    """Score difference ``a - b`` on all rows, and its 95 % paired-bootstrap interval.

    >>> delta, low, high = paired_bootstrap(get_metric("log_loss"), y, ens, best, task="multiclass")
    """
    y = np.asarray(y)
    delta = metric(y, pred_a, task=task, sample_weight=sample_weight) - metric(
        y, pred_b, task=task, sample_weight=sample_weight
    )
    if n_resamples == 0:
        return float(delta), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = len(y)
    idx = rng.integers(0, n, size=(n_resamples, n))
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if metric.name in _PER_ROW:
        va, vb = _per_row(metric, y, pred_a, task), _per_row(metric, y, pred_b, task)
        ww = w[idx]
        total = ww.sum(axis=1)
        sa, sb = (va[idx] * ww).sum(axis=1) / total, (vb[idx] * ww).sum(axis=1) / total
        if metric.name == "rmse":
            sa, sb = np.sqrt(sa), np.sqrt(sb)
        diffs = sa - sb
    else:
        diffs = np.empty(n_resamples)
        for b in range(n_resamples):
            rows = idx[b]
            wb = None if sample_weight is None else w[rows]
            try:
                diffs[b] = metric(y[rows], pred_a[rows], task=task, sample_weight=wb) - metric(
                    y[rows], pred_b[rows], task=task, sample_weight=wb
                )
            except ValueError:  # e.g. a resample with one class for roc_auc
                diffs[b] = np.nan
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(delta), float(low), float(high)


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
    rows = []
    for entry in entries:
        row = {"model": entry.name, "role": entry.role, "level": entry.level}
        for name in metrics:
            m = get_metric(name)
            row[f"cv_{m.name}"] = entry.scores[m.name]
        row[f"cv_{primary.name}_std"] = float(np.std(entry.fold_scores[primary.name]))
        if entry.role == "base":
            row.update(delta_vs_best_base=np.nan, ci_low=np.nan, ci_high=np.nan)
        else:
            delta, low, high = paired_bootstrap(
                primary,
                y,
                entry.oof,
                best_base.oof,
                task=task,
                n_resamples=n_resamples,
                seed=seed,
                sample_weight=sample_weight,
            )
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
