"""Leaderboard intervals at scale: the paired bootstrap vs the analytic (t, DeLong) ones.

One leaderboard's interval of a stack against the best base model, on generated
predictions (10 classes), timed both ways in the same run: ``interval="bootstrap"``
(``--resamples`` paired resamples; for ``roc_auc``, which costs a sort-free O(n) pass per
column per resample, ``--auc-resamples`` are timed and the time scaled linearly, said in
the output) and ``interval="analytic"``. Printed per primary metric: the two times, their
ratio, and the two intervals side by side.

    python experiments/benchmarks/bench_intervals.py [--rows 1000000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stacking.evaluate import Entry, leaderboard
from stacking.metrics import get_metric
from stacking.numeric import softmax


def workload(n: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    truth, shared = np.eye(classes)[y], rng.normal(size=(n, classes))
    base = softmax(1.3 * truth + shared + 0.8 * rng.normal(size=(n, classes)))
    stack = softmax(1.6 * truth + shared + 0.5 * rng.normal(size=(n, classes)))
    return y, [Entry("base", "base", 1, base), Entry("stack", "meta", 2, stack)]


def board(y, entries, metric: str, interval: str, resamples: int):
    for e in entries:  # the scores the leaderboard reads (not timed: the same both ways)
        e.scores[metric] = get_metric(metric)(y, e.oof, task="multiclass")
        e.fold_scores[metric] = [e.scores[metric]]
    started = time.perf_counter()
    frame = leaderboard(
        entries,
        y,
        task="multiclass",
        metrics=[metric],
        selected="stack",
        n_resamples=resamples,
        interval=interval,
    ).set_index("model")
    return time.perf_counter() - started, frame.loc["stack"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--auc-resamples", type=int, default=20)
    args = parser.parse_args()
    y, entries = workload(args.rows)
    print(f"{args.rows} rows x 10 classes; bootstrap of {args.resamples} paired resamples")
    for metric in ("log_loss", "roc_auc"):
        timed = args.resamples if metric != "roc_auc" else min(args.resamples, args.auc_resamples)
        t_boot, row_b = board(y, entries, metric, "bootstrap", timed)
        t_boot *= args.resamples / timed
        t_fast, row_a = board(y, entries, metric, "analytic", args.resamples)
        scaled = f" (timed {timed}, scaled)" if timed != args.resamples else ""
        print(
            f"{metric:<9} bootstrap {t_boot:8.2f} s{scaled}  {row_a.ci_method} {t_fast:6.3f} s  "
            f"ratio {t_boot / t_fast:7.1f}x  "
            f"interval bootstrap [{row_b.ci_low:+.6f}, {row_b.ci_high:+.6f}] "
            f"{row_a.ci_method} [{row_a.ci_low:+.6f}, {row_a.ci_high:+.6f}]"
        )


if __name__ == "__main__":
    main()
