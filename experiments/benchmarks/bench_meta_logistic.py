"""Meta candidate speed: ``logistic`` on ``meta.features: logit``, scaled vs unscaled.

The case of a user's report: 4,500 rows x 25 level-1 columns (5 base models x 5 classes),
log-probability features. LogisticRegression's lbfgs needs many more iterations on
unscaled log-probabilities (columns from -13.8 to 0 with very different spreads) than
on standardised ones. The ``logistic`` short name is now a Pipeline(StandardScaler,
LogisticRegression); the old default (``LogisticRegression(max_iter=1000)`` on the raw
columns) is timed in the same run on the same generated data, both cross-fitted on the
same 5 folds and refit on all rows, as ``stacking run`` does. Printed: seconds of each,
the ratio, and each one's out-of-fold log loss (the leaderboard number that changes).

    python experiments/benchmarks/bench_meta_logistic.py [--rows 4500] [--models 5] [--classes 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from stacking.evaluate import Entry, score_entry
from stacking.folds import FoldPlan
from stacking.level1 import _transform
from stacking.meta import _candidates, make_candidate
from stacking.meta._candidates import Candidate, cross_fit, refit
from stacking.numeric import softmax


def level1(rows: int, models: int, classes: int, seed: int = 0):
    """Labels and ``models`` blocks of base-model probabilities of varied quality and
    confidence (some over-confident, as trained networks are), as log-probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    signal = np.eye(classes)[y]
    blocks = []
    for m in range(models):
        noise = rng.normal(size=(rows, classes))
        temperature = [1.0, 3.0, 8.0, 0.5, 15.0][m % 5]  # spread of the logits
        logits = temperature * (signal * (1.0 + 0.3 * m) + noise)
        blocks.append(_transform(softmax(logits), "logit", "multiclass", None))
    return np.hstack(blocks), y


def timed(candidate: Candidate, X, y, plan, classes: int):
    started = time.perf_counter()
    oof = cross_fit(candidate, X, y, plan, task="multiclass", n_outputs=classes)
    refit(candidate, X, y)
    seconds = time.perf_counter() - started
    entry = Entry(candidate.name, "meta", 2, oof)
    score_entry(entry, y, plan, task="multiclass", metrics=["log_loss", "accuracy"])
    return seconds, entry.scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4500)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--n-splits", type=int, default=5)
    args = parser.parse_args()
    X, y = level1(args.rows, args.models, args.classes)
    plan = FoldPlan(ids=np.arange(len(y)), folds=np.arange(len(y)) % args.n_splits)
    print(f"level 1: {X.shape[0]} rows x {X.shape[1]} columns (log-probabilities)")
    old = Candidate("logistic (unscaled)", LogisticRegression(max_iter=1000), False)
    new = make_candidate("logistic", task="multiclass")
    new.name = "logistic (scaled)"
    results, library = {}, "library's BLAS threads"
    for threads, limit in [(library, -1), ("one BLAS thread", 1 << 62)]:
        _candidates.SMALL_LEVEL1 = limit  # -1: never limit (the old code); else always
        for cand in (old, new):
            results[cand.name, threads] = timed(cand, X, y, plan, args.classes)
    for (name, threads), (seconds, s) in results.items():
        print(
            f"{name:<20} {threads:<23} {seconds:7.2f} s  "
            f"log_loss {s['log_loss']:.5f}  accuracy {s['accuracy']:.4f}"
        )
    before = results[old.name, library]
    after = results[new.name, "one BLAS thread"]
    print(
        f"new default (scaled, one BLAS thread) vs old (unscaled, library threads): "
        f"{before[0] / after[0]:.1f}x faster; scaling alone "
        f"{before[0] / results[new.name, library][0]:.1f}x; "
        f"log_loss {after[1]['log_loss'] - before[1]['log_loss']:+.5f}"
    )


if __name__ == "__main__":
    main()
