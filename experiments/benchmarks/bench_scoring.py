"""Scoring speed: shared per-row / rank-based metrics vs the previous scikit-learn-per-call code.

One leaderboard's evaluation, as ``stacking run`` does it: every entry scored on all rows
and per fold with the default multiclass metrics (log_loss, accuracy, roc_auc), then the
paired bootstrap (1,000 resamples) of the one meta entry against the best base model.
10 classes, 5 folds, two base entries and one meta entry; the new code against a copy of
the old functions (below, unchanged) in the same run, with their results compared.

The old bootstrap draws the whole ``(n_resamples, n)`` index matrix at once (8 GB at 1M
rows); where that does not fit in ``--old-max-gb`` it runs fewer resamples and its time is
scaled linearly to ``--resamples`` (said in the output). With ``--primary roc_auc`` the old
bootstrap calls scikit-learn twice per resample, so 20 resamples are timed and scaled.

    python experiments/benchmarks/bench_scoring.py [--rows 100000 1000000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn import metrics as skm

from stacking.evaluate import Entry, leaderboard, score_entry
from stacking.folds import FoldPlan
from stacking.metrics import get_metric

# --- the old code path (stacking/metrics.py and evaluate.py before the shared metrics) ---

_EPS = 1e-15
_PER_ROW = {"log_loss", "brier_score", "accuracy", "mse", "rmse", "mae"}


def _old_log_loss(y, p, task, w):
    p = np.clip(p, _EPS, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return skm.log_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=w)


def _old_roc_auc(y, p, task, w):
    p = p / p.sum(axis=1, keepdims=True)
    return skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1]), sample_weight=w)


def _old_accuracy(y, p, task, w):
    return skm.accuracy_score(y, np.argmax(p, axis=1), sample_weight=w)


OLD = {"log_loss": _old_log_loss, "roc_auc": _old_roc_auc, "accuracy": _old_accuracy}


def _old_score_entry(entry, y, plan, *, task, metrics, sample_weight=None):
    for name in metrics:
        func = OLD[name]
        entry.scores[name] = float(func(y, entry.oof, task, sample_weight))
        fold_scores = []
        for k in range(plan.n_splits):
            rows = plan.test_index(k)
            w = None if sample_weight is None else sample_weight[rows]
            fold_scores.append(float(func(y[rows], entry.oof[rows], task, w)))
        entry.fold_scores[name] = fold_scores


def _old_per_row(name, y, pred, task):
    if name == "log_loss":
        p = np.clip(pred, _EPS, 1.0)
        p = p / p.sum(axis=1, keepdims=True)
        return -np.log(p[np.arange(len(y)), y])
    return (pred.argmax(axis=1) == y).astype(float)  # accuracy


def _old_paired_bootstrap(name, y, pred_a, pred_b, *, task, n_resamples, seed=0):
    func = OLD[name]
    delta = func(y, pred_a, task, None) - func(y, pred_b, task, None)
    rng = np.random.default_rng(seed)
    n = len(y)
    idx = rng.integers(0, n, size=(n_resamples, n))
    w = np.ones(n)
    if name in _PER_ROW:
        va, vb = _old_per_row(name, y, pred_a, task), _old_per_row(name, y, pred_b, task)
        ww = w[idx]
        total = ww.sum(axis=1)
        diffs = (va[idx] * ww).sum(axis=1) / total - (vb[idx] * ww).sum(axis=1) / total
    else:
        diffs = np.array(
            [func(y[r], pred_a[r], task, None) - func(y[r], pred_b[r], task, None) for r in idx]
        )
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(delta), float(low), float(high)


# --- the workload ---------------------------------------------------------------------


def _workload(n: int, n_classes: int = 10, n_splits: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    onehot = np.eye(n_classes)[y]

    def predictions(strength):
        p = rng.dirichlet(np.ones(n_classes), size=n) + strength * onehot
        return p / p.sum(axis=1, keepdims=True)

    entries = [
        Entry("base_a", "base", 1, predictions(0.2)),
        Entry("base_b", "base", 1, predictions(0.3)),
        Entry("stack", "meta", 2, predictions(0.35)),
    ]
    plan = FoldPlan(ids=np.arange(n), folds=rng.permutation(np.arange(n) % n_splits))
    return y, entries, plan


def _clock(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(n: int, resamples: int, old_max_gb: float, primary: str) -> dict:
    metrics = [primary] + [m for m in ("log_loss", "accuracy", "roc_auc") if m != primary]
    y, entries, plan = _workload(n)
    task = "multiclass"

    def new():
        fresh = [Entry(e.name, e.role, e.level, e.oof) for e in entries]
        for e in fresh:
            score_entry(e, y, plan, task=task, metrics=metrics)
        board = leaderboard(
            fresh,
            y,
            task=task,
            metrics=metrics,
            selected="stack",
            n_resamples=resamples,
            interval="bootstrap",  # this benchmark compares two bootstraps
        )
        return fresh, board

    t_new, (new_entries, board) = _clock(new)

    old_entries = [Entry(e.name, e.role, e.level, e.oof) for e in entries]
    t_old_scores, _ = _clock(
        lambda: [_old_score_entry(e, y, plan, task=task, metrics=metrics) for e in old_entries]
    )
    # the old bootstrap holds idx, w[idx] and two gathered (R, n) arrays: ~32 bytes per cell
    old_resamples = min(resamples, max(10, int(old_max_gb * 2**30 / (32 * n))))
    if primary not in _PER_ROW:  # one scikit-learn call per resample: time a few
        old_resamples = min(old_resamples, 20)
    best = max(
        old_entries[:2],
        key=lambda e: (
            -e.scores[primary] if not get_metric(primary).greater_is_better else e.scores[primary]
        ),
    )
    t_old_boot, old_ci = _clock(
        lambda: _old_paired_bootstrap(
            primary, y, old_entries[2].oof, best.oof, task=task, n_resamples=old_resamples
        )
    )
    t_old = t_old_scores + t_old_boot * resamples / old_resamples

    score_diff = max(
        abs(a.scores[m] - b.scores[m]) for a, b in zip(new_entries, old_entries) for m in metrics
    )
    fold_diff = max(
        float(np.max(np.abs(np.subtract(a.fold_scores[m], b.fold_scores[m]))))
        for a, b in zip(new_entries, old_entries)
        for m in metrics
    )
    new_ci = tuple(
        board.set_index("model").loc["stack", ["delta_vs_best_base", "ci_low", "ci_high"]]
    )
    return {
        "rows": n,
        "new_s": t_new,
        "old_s": t_old,
        "ratio": t_old / t_new,
        "old_scores_s": t_old_scores,
        "old_bootstrap_s": t_old_boot,
        "old_resamples": old_resamples,
        "max_score_diff": score_diff,
        "max_fold_score_diff": fold_diff,
        "new_ci": new_ci,
        "old_ci": old_ci,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--old-max-gb", type=float, default=3.0)
    parser.add_argument("--primary", default="log_loss", choices=["log_loss", "roc_auc"])
    args = parser.parse_args()
    print(
        f"primary {args.primary}; metrics log_loss, accuracy, roc_auc; 10 classes, 5 folds, "
        f"3 entries, {args.resamples} bootstrap resamples of 1 entry vs the best base"
    )
    for n in args.rows:
        r = run(n, args.resamples, args.old_max_gb, args.primary)
        scaled = (
            ""
            if r["old_resamples"] == args.resamples
            else (
                f" (old bootstrap timed on {r['old_resamples']} resamples: "
                f"{r['old_bootstrap_s']:.2f} s, scaled x{args.resamples / r['old_resamples']:.0f})"
            )
        )
        print(
            f"rows {n:>9,}: new {r['new_s']:7.2f} s  old {r['old_s']:8.2f} s "
            f"(scores+folds {r['old_scores_s']:.2f} s){scaled}  ratio {r['ratio']:.1f}x"
        )
        print(
            f"    max |new - old|: scores {r['max_score_diff']:.1e}, fold scores "
            f"{r['max_fold_score_diff']:.1e}; delta/CI new {np.round(r['new_ci'], 5)} "
            f"old {np.round(r['old_ci'], 5)}"
        )


if __name__ == "__main__":
    main()
