"""The results directory: the files of DESIGN.md, written whole or not at all.

``write_partial`` writes everything into ``.<name>.partial`` beside the target folder;
the experiment records the run from there and renames it into place last, so a failed
run leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stacking.data import Dataset
from stacking.errors import DataError
from stacking.folds import FoldPlan
from stacking.level1 import Level1, block_names
from stacking.metrics import get_metric
from stacking.predictor import prediction_frame


def default_dir(name: str) -> Path:
    """``runs/<name>-<timestamp>`` in the working folder."""
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


def check_output_dir(out: Path) -> Path:
    """Refuse a results folder that already holds something (nothing is overwritten)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output directory {str(out)!r} is not empty; choose another --output")
    return out


def oof_frame(data: Dataset, plan: FoldPlan, level1: Level1) -> pd.DataFrame:
    """``oof.parquet``: id, ``fold``, target column(s), then the level-1 features."""
    head = pd.DataFrame({data.id_column: data.ids, "fold": plan.folds})
    targets = data.train[data.target_columns].reset_index(drop=True)
    return pd.concat([head, targets, level1.features], axis=1)


def test_frame(data: Dataset, level1: Level1, ensemble_test) -> pd.DataFrame | None:
    """``test_predictions.parquet``: id, level-1 test features, the ensemble's output."""
    if data.test is None or ensemble_test is None:
        return None
    predictions = prediction_frame(
        ensemble_test, task=data.task, classes=data.classes, output_names=data.output_names()
    )
    head = pd.DataFrame({data.id_column: data.test_ids})
    return pd.concat([head, level1.test_features, predictions], axis=1)


def model_example(data: Dataset, predictor, test_predictions: pd.DataFrame | None):
    """A few input rows and the ensemble's output for them: the served model's signature."""
    if test_predictions is not None:
        rows = data.test.head(5)
        ensemble = [c for c in test_predictions.columns if c.startswith("ensemble__")]
        return rows, test_predictions.head(5)[[data.id_column, *ensemble, "prediction"]]
    rows = data.train.head(5).drop(columns=data.target_columns)
    return rows, predictor.predict(rows)


def metrics_json(data: Dataset, plan: FoldPlan, entries, ensemble, metric_names, board) -> dict:
    """``metrics.json``: directions, digests, and every entry's overall and fold scores."""
    metrics = [get_metric(m) for m in metric_names]
    return {
        "task": data.task,
        "primary_metric": metrics[0].name,
        "directions": {m.name: ("higher" if m.greater_is_better else "lower") for m in metrics},
        "ensemble": ensemble.name,
        "best_base": board[board.role == "base"].iloc[0]["model"],
        "data_digest": data.digest,
        "folds_digest": plan.digest,
        "n_rows": len(data.ids),
        "n_splits": plan.n_splits,
        "entries": {
            e.name: {
                "role": e.role,
                "level": e.level,
                "scores": e.scores,
                "fold_scores": e.fold_scores,
            }
            for e in entries
        },
        "leaderboard": json.loads(board.to_json(orient="records")),
    }


def write_partial(
    out: Path,
    *,
    config: dict,
    data: Dataset,
    plan: FoldPlan,
    oof: pd.DataFrame,
    test_frame: pd.DataFrame | None,
    board: pd.DataFrame,
    weights: pd.DataFrame,
    metrics: dict,
    entries,
    predictor,
) -> Path:
    """Write every result file into ``.<out>.partial`` and return that folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        oof.to_parquet(tmp / "oof.parquet", index=False)
        meta = pd.DataFrame({data.id_column: data.ids, "fold": plan.folds})
        for e in entries:
            if e.role != "base":
                cols = block_names(e.name, data, drop_redundant=False)
                meta[cols] = np.asarray(e.oof).reshape(len(meta), -1)
        meta.to_parquet(tmp / "meta_oof.parquet", index=False)
        if test_frame is not None:
            test_frame.to_parquet(tmp / "test_predictions.parquet", index=False)
        board.to_csv(tmp / "leaderboard.csv", index=False)
        weights.to_csv(tmp / "weights.csv", index=False)
        plan.save(tmp / "folds.csv", id_column=data.id_column)
        (tmp / "config.resolved.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        predictor.save(tmp / "ensemble")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
