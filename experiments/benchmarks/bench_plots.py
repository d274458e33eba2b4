"""Plot speed: ``write_plots`` on a results folder of issue 9's shape, per plot and in total.

A synthetic results folder as ``stacking run`` writes it (4 base models, 10 classes, 5 folds,
two meta candidates, weights, leaderboard, metrics) with ``--rows`` OOF rows, then each
``plot_*`` and ``write_plots`` timed (best of ``--repeat``, after one warm-up call so the
font cache and matplotlib's first import are not counted). No TensorFlow: plots only read
the folder's files. Run it from two checkouts to compare before and after.

    python experiments/benchmarks/bench_plots.py [--rows 100000 1000000] [--task multiclass]

Measured 2026-11-29 on the shared 2-core box (load average ~2.5, so +-20 %), multiclass,
write_plots: before (main at 0bd7bd2) 1.22-1.33 s at 100k and 3.58-3.74 s at 1M rows;
after 0.74-0.87 s at 100k and 1.56-1.86 s at 1M. What remains at 100k is matplotlib's
fixed cost per figure (~0.1-0.2 s each: artists, ticks, text), not the rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stacking import plots

BASES = ("mlp_a", "mlp_b", "mlp_c", "mlp_d")


def make_folder(root: Path, rows: int, task: str, n_classes: int = 10) -> Path:
    """A results folder with ``rows`` OOF rows; classification or regression."""
    rng = np.random.default_rng(0)
    outputs = ["pred"] if task == "regression" else [f"c{k}" for k in range(n_classes)]
    if task == "regression":
        truth = pd.DataFrame({"y": rng.normal(size=rows)})
    else:
        truth = pd.DataFrame({"y": np.asarray(outputs)[rng.integers(0, n_classes, rows)]})

    def block() -> np.ndarray:
        if task == "regression":
            return rng.normal(size=(rows, 1)).astype(np.float32)
        return rng.dirichlet(np.ones(n_classes), rows).astype(np.float32)

    frame = {"id": np.arange(rows), "fold": np.arange(rows) % 5, **truth}
    for m in BASES:
        frame.update({f"{m}__{o}": col for o, col in zip(outputs, block().T)})
    pd.DataFrame(frame).to_parquet(root / "oof.parquet", index=False)
    meta = {"id": np.arange(rows), "fold": np.arange(rows) % 5}
    for c in ("mean", "stack"):
        meta.update({f"{c}__{o}": col for o, col in zip(outputs, block().T)})
    pd.DataFrame(meta).to_parquet(root / "meta_oof.parquet", index=False)
    metric = "rmse" if task == "regression" else "log_loss"
    pd.DataFrame(
        {
            "model": ["stack", "mean", *BASES],
            "role": ["meta", "meta"] + ["base"] * len(BASES),
            f"cv_{metric}": np.linspace(0.5, 0.8, 2 + len(BASES)),
            "delta_vs_best_base": [-0.1, -0.05] + [np.nan] * len(BASES),
            "ci_low": [-0.15, -0.1] + [np.nan] * len(BASES),
            "ci_high": [-0.04, 0.01] + [np.nan] * len(BASES),
            "selected": [True] + [False] * (1 + len(BASES)),
        }
    ).to_csv(root / "leaderboard.csv", index=False)
    weights = [("stack", m, f"{m}__{o}", o, rng.normal()) for m in BASES for o in outputs]
    pd.DataFrame(
        weights, columns=["candidate", "base_model", "feature", "output", "weight"]
    ).to_csv(root / "weights.csv", index=False)
    info = {"task": task, "ensemble": "stack", "primary_metric": metric}
    (root / "metrics.json").write_text(json.dumps(info))
    return root


def best_of(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(folder: Path, names: list[str], repeat: int) -> tuple[float, dict[str, float]]:
    """``write_plots`` and each plot alone (each with a fresh :class:`Results`: own reads)."""
    out = folder / "plots"
    out.mkdir(exist_ok=True)
    plots.write_plots(folder)  # warm-up: imports, font cache
    parts = {}
    for name in names:
        plot = getattr(plots, f"plot_{name}")
        parts[name] = best_of(lambda plot=plot: plot(plots.Results(folder), out), repeat)
    return best_of(lambda: plots.write_plots(folder), repeat), parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--task", default="multiclass", choices=["multiclass", "regression"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    names = ["leaderboard", "correlation", "weights"]
    names += ["residuals"] if args.task == "regression" else ["confusion", "calibration"]
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            total, parts = measure(make_folder(Path(tmp), rows, args.task), names, args.repeat)
        detail = ", ".join(f"{n} {t:.3f}" for n, t in parts.items())
        print(f"rows={rows:>9,} write_plots {total:.3f} s  (each alone, own reads: {detail})")


if __name__ == "__main__":
    main()
