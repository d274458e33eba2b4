"""The private leaderboard: score every base model and the ensemble on the held-out
labels (``data/test_solution.csv``), which the stack never saw, next to the run's
cross-validated leaderboard.

    python experiments/kaggle/score_holdout.py [RESULTS_DIR] [--solution FILE]

``RESULTS_DIR`` defaults to the newest ``runs/kaggle-*`` folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

HERE = Path(__file__).resolve().parent


def holdout_scores(results: Path, solution: Path) -> pd.DataFrame:
    """Per model (base models' level-1 columns, then ``ensemble``): log loss, ROC AUC and
    accuracy of P(M) on the held-out rows, beside the run's cross-validated log loss."""
    resolved = yaml.safe_load((results / "config.resolved.yaml").read_text())
    if resolved["meta"]["features"]["kind"] != "proba":  # the columns would not be P(M)
        raise SystemExit(f"{results}: score_holdout.py reads `meta.features: proba` runs")
    preds = pd.read_parquet(results / "test_predictions.parquet")
    truth = pd.read_csv(solution, dtype={"id": str})
    preds["id"] = preds["id"].astype(str)
    frame = truth.merge(preds, on="id", validate="one_to_one")
    y = (frame["diagnosis"] == "M").to_numpy(int)
    board = pd.read_csv(results / "leaderboard.csv").set_index("model")
    rows = []
    names = [c.removesuffix("__M") for c in preds.columns if c.endswith("__M")]
    for name in names:
        p = np.clip(frame[f"{name}__M"].to_numpy(float), 1e-15, 1 - 1e-15)
        model = board.index[board.selected][0] if name == "ensemble" else name
        rows.append(
            {
                "model": name if name != "ensemble" else f"ensemble ({model})",
                "cv_log_loss": board.loc[model, "cv_log_loss"] if model in board.index else None,
                "holdout_log_loss": log_loss(y, p, labels=[0, 1]),
                "holdout_roc_auc": roc_auc_score(y, p),
                "holdout_accuracy": accuracy_score(y, p >= 0.5),
            }
        )
    return pd.DataFrame(rows).sort_values("holdout_log_loss").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path)
    parser.add_argument("--solution", type=Path, default=HERE / "data" / "test_solution.csv")
    args = parser.parse_args()
    runs = sorted(Path("runs").glob("kaggle-*"), key=lambda p: p.stat().st_mtime)
    if args.results is None and not runs:
        raise SystemExit("no runs/kaggle-* folder here; run `stacking run configs/kaggle.yaml`")
    results = args.results or runs[-1]
    table = holdout_scores(results, args.solution)
    print(f"held-out rows ({args.solution}), results {results}:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
