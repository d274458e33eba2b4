"""``meta.cost``: what serving each leaderboard entry costs.

A served ensemble runs every base model its entry uses, so an entry's cost is the sum
over those models: their weights, and their time to predict new rows once loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stacking.base import ResolvedBaseModel
from stacking.executors import Job, load_job, predict_job

COST_ROWS = 1000  # training rows each served model predicts when meta.cost times it


@dataclass
class ServedCost:
    """What serving one base model costs: weights, and seconds per 1,000 rows."""

    n_params: float  # NaN when a format does not tell
    seconds_per_1k: float
    flops_per_row: float = float("nan")  # NaN when a format does not tell


def served_cost(
    recipe: ResolvedBaseModel, views: list[Any], n_rows: int, batch_size: int
) -> ServedCost:
    """Load every model file that serving runs for this base model (the full model, or
    each fold model when there is none), count its weights, and time its prediction of
    ``views`` (``n_rows`` rows) after one untimed warm-up call, as a server that has
    loaded its models would."""
    params, seconds, flops = 0.0, 0.0, 0.0
    for path in recipe.row_paths:
        job = Job(
            model=recipe.name,
            spec=recipe.spec,
            path=path,
            inputs=[views],
            keys=["cost"],
            batch_size=batch_size,
        )
        model = load_job(job)
        params += np.nan if model.n_params is None else model.n_params
        counted = model.flops_per_row()
        flops += np.nan if counted is None else counted
        predict_job(model, job)  # warm-up: tracing and first-call allocation
        started = time.perf_counter()
        predict_job(model, job)
        seconds += time.perf_counter() - started
    return ServedCost(params, seconds * 1000 / n_rows, flops)


def with_cost_columns(
    board: pd.DataFrame, used: dict[str, list[str]], cost: dict[str, ServedCost]
) -> pd.DataFrame:
    """``models_used``, ``n_models_used``, ``n_params``, ``flops_per_row`` and
    ``seconds_per_1k_rows`` of every entry: ``used`` names each entry's base models,
    ``cost`` prices each of them."""
    board["models_used"] = [",".join(used[m]) for m in board["model"]]
    board["n_models_used"] = [len(used[m]) for m in board["model"]]
    board["n_params"] = [float(sum(cost[b].n_params for b in used[m])) for m in board["model"]]
    board["flops_per_row"] = [
        float(sum(cost[b].flops_per_row for b in used[m])) for m in board["model"]
    ]
    board["seconds_per_1k_rows"] = [
        float(sum(cost[b].seconds_per_1k for b in used[m])) for m in board["model"]
    ]
    return board
