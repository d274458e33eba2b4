"""The stacked-overfitting guard: a meta-model is kept only if it beats the best base
model on rows that no model of the stack ever trained on.

A stacked meta-model is fitted on its base models' out-of-fold predictions. When those
predictions are optimistic (a base model early-stopped on its own held-out fold, a
target encoding fitted on all rows, …) the meta-model learns to trust them, and its own
cross-validated score is optimistic in the same way: nothing inside the cross-validation
can see it. The only honest check is rows that are fresh for every model of the stack.
With frozen base models such rows must be reserved in the fold plan itself, before any
fold model trains (``folds.holdout``, fold ``-1``); every fold model predicts them, as
test rows, so their level-1 features are as fresh as a test row's. This is the idea of
AutoGluon's dynamic stacking (DyStack), adapted to models that are already trained.

:func:`set_aside` removes the reserved rows before the meta level (it fits and selects on
the other rows only) and keeps their base predictions; :func:`apply_guard` predicts them
through the fitted stack, scores every entry on them and, with ``meta.guard``, falls back
from a selected meta-model that does not beat the best base model on them.

>>> data, plan, preds, reserved = set_aside(data, plan, preds)   # reserved: None if none
>>> ensemble, verdict = apply_guard(reserved, stack, entries, ensemble, metric_names,
...                                 enabled=True)
>>> verdict.passed, verdict.message
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stacking.data import Dataset
from stacking.engine import BasePredictions
from stacking.errors import DataError
from stacking.evaluate import Entry
from stacking.folds import FoldPlan
from stacking.level1 import block_names
from stacking.metrics import get_metric
from stacking.stack import FittedStack

PASS, FAIL, REFERENCE = "pass", "fail", "reference"
BASE_MEAN = "base_mean"  # the leaderboard's mean of the base models (as in experiment)


@dataclass
class ReservedRows:
    """The rows a fold plan reserves: their truth, table rows and base predictions."""

    plan: FoldPlan  # the whole plan, reserved rows included (its digest is the run's)
    data: Dataset  # every training row, as loaded
    index: np.ndarray  # positions of the reserved rows in the training table
    base: dict[str, np.ndarray]  # each base model's prediction of them (fold-model mean)

    @property
    def y(self) -> np.ndarray:
        return self.data.y[self.index]

    @property
    def sample_weight(self) -> np.ndarray | None:
        weight = self.data.sample_weight
        return None if weight is None else weight[self.index]

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.data.ids)[self.index]

    def frame(self) -> pd.DataFrame:
        return self.data.train.iloc[self.index].reset_index(drop=True)


@dataclass
class GuardVerdict:
    """What the guard saw on the reserved rows and what it decided."""

    metric: str
    n_rows: int
    enabled: bool  # meta.guard: the decision applies; off: the scores are only reported
    selected: str  # the entry the cross-validated scores chose
    reference: str  # the best base model by primary score on the reserved rows
    ensemble: str  # the entry kept: ``selected``, or ``reference`` after a fall-back
    passed: bool
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # entry -> metric -> score
    message: str = ""
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "metric": self.metric,
            "n_rows": self.n_rows,
            "selected": self.selected,
            "reference": self.reference,
            "ensemble": self.ensemble,
            "passed": self.passed,
            "message": self.message,
            "scores": self.scores,
        }


def set_aside(
    data: Dataset, plan: FoldPlan, preds: dict[str, BasePredictions]
) -> tuple[Dataset, FoldPlan, dict[str, BasePredictions], ReservedRows | None]:
    """The data, plan and base predictions of the rows the meta level may fit on, and the
    reserved rows (``None`` when the plan reserves none: everything is returned as is)."""
    if plan.n_reserved == 0:
        return data, plan, preds, None
    keep = ~plan.reserved
    index = np.flatnonzero(plan.reserved)
    weight = data.sample_weight
    kept = replace(
        data,
        train=data.train.iloc[np.flatnonzero(keep)].reset_index(drop=True),
        ids=np.asarray(data.ids)[keep],
        y=data.y[keep],
        sample_weight=None if weight is None else weight[keep],
    )
    base = {}
    for name, pred in preds.items():
        assert pred.oof is not None, "set_aside follows the training rows' predictions"
        base[name] = pred.oof[index]
    kept_preds = {
        name: replace(pred, oof=None if pred.oof is None else pred.oof[keep])
        for name, pred in preds.items()
    }
    return kept, plan.kept(), kept_preds, ReservedRows(plan, data, index, base)


def check_guard(enabled: bool, plan: FoldPlan, source: str) -> None:
    """``meta.guard`` on a plan without reserved rows (a fold file or column without -1)."""
    if enabled and plan.n_reserved == 0:
        raise DataError(
            f"meta.guard needs rows the fold plan reserves (fold -1), but the plan of "
            f"{source} has none; set folds.holdout or export the plan again with it"
        )


def guard_predictions(reserved: ReservedRows, stack: FittedStack) -> dict[str, np.ndarray]:
    """Every entry's predictions of the reserved rows: the base models' (fold-model
    means), their mean, and each meta-model's through the fitted stack, as for test rows."""
    source = f"the reserved rows of {reserved.data.source.get('train', 'the training data')}"
    level1 = stack.level1(reserved.base, reserved.frame(), source=source)
    mean = np.mean(list(reserved.base.values()), axis=0)
    return {**reserved.base, BASE_MEAN: mean, **stack.combine(level1)}


def apply_guard(
    reserved: ReservedRows,
    stack: FittedStack,
    entries: list[Entry],
    ensemble: Entry,
    metric_names: list[str],
    *,
    enabled: bool,
) -> tuple[Entry, GuardVerdict]:
    """Score every entry on the reserved rows; with ``enabled`` keep ``ensemble`` only if
    it is a meta-model that beats the reference base model there, else fall back to it.

    The reference is the base model with the best primary score on the reserved rows (a
    meta-model must beat every base model there, strictly); a fall-back keeps it.
    ``stack.ensemble`` follows the choice.
    """
    data = reserved.data
    predictions = guard_predictions(reserved, stack)
    scores: dict[str, dict[str, float]] = {}
    for entry in entries:
        scores[entry.name] = {}
        for name in metric_names:
            metric = get_metric(name)
            scores[entry.name][metric.name] = metric(
                reserved.y,
                predictions[entry.name],
                task=data.task,
                sample_weight=reserved.sample_weight,
            )
    primary = get_metric(metric_names[0])
    bases = [e for e in entries if e.role == "base"]
    reference = bases[0]  # the best base model on the reserved rows: the bar to clear
    for entry in bases[1:]:
        if primary.better(scores[entry.name][primary.name], scores[reference.name][primary.name]):
            reference = entry
    bar, got = scores[reference.name][primary.name], scores[ensemble.name][primary.name]
    passed = ensemble.role == "meta" and primary.better(got, bar)
    where = f"the {len(reserved.index)} reserved rows"
    if ensemble.role != "meta":
        message = f"guard: {ensemble.name} is a base model; nothing to check on {where}"
    elif passed:
        message = (
            f"guard: pass: {ensemble.name} scores {primary.name} {got:.4f} on {where}, better "
            f"than the best base model {reference.name} ({bar:.4f})"
        )
    else:
        action = (
            f"the ensemble falls back to {reference.name}"
            if enabled
            else "kept, as meta.guard is off"
        )
        message = (
            f"guard: fail: {ensemble.name} scores {primary.name} {got:.4f} on {where}, not "
            f"better than the best base model {reference.name} ({bar:.4f}); {action}"
        )
    kept = reference if enabled and not passed else ensemble
    stack.ensemble = kept.name
    verdict = GuardVerdict(
        metric=primary.name,
        n_rows=len(reserved.index),
        enabled=enabled,
        selected=ensemble.name,
        reference=reference.name,
        ensemble=kept.name,
        passed=passed,
        scores=scores,
        message=message,
        predictions={e.name: predictions[e.name] for e in entries},
    )
    return kept, verdict


def with_guard_columns(board: pd.DataFrame, verdict: GuardVerdict) -> pd.DataFrame:
    """``guard_<metric>``: every entry's scores on the reserved rows; ``guard``: ``pass`` or
    ``fail`` on the entry the cross-validated scores selected, ``reference`` on the base
    model it had to beat."""
    for metric in next(iter(verdict.scores.values())):
        board[f"guard_{metric}"] = [verdict.scores[m][metric] for m in board["model"]]
    outcome = PASS if verdict.passed else FAIL
    marks = {verdict.reference: REFERENCE, verdict.selected: outcome}
    board["guard"] = [marks.get(m, "") for m in board["model"]]
    return board


def record_guard(metrics: dict[str, Any], verdict: GuardVerdict, reserved: ReservedRows) -> None:
    """The verdict in ``metrics.json`` (``guard``), as MLflow tags (``stacking.guard``,
    ``stacking.guard_reason``), and the digest of the whole plan (reserved rows included:
    the plan the base models were trained on)."""
    metrics["guard"] = verdict.to_dict()
    metrics["folds_digest"] = reserved.plan.digest
    metrics["n_reserved"] = len(reserved.index)
    tags = metrics.setdefault("tags", {})
    outcome = PASS if verdict.passed else FAIL
    tags["stacking.guard"] = outcome if verdict.enabled else f"{outcome} (meta.guard off)"
    tags["stacking.guard_reason"] = verdict.message


def write_reserved(folder: Path, reserved: ReservedRows, verdict: GuardVerdict) -> None:
    """``folds.csv`` as the whole plan (reserved rows: fold -1) and ``guard.parquet``: the
    reserved rows' ids, truth and every entry's predictions of them."""
    data = reserved.data
    reserved.plan.save(folder / "folds.csv", id_column=data.id_column)
    frame = pd.DataFrame({data.id_column: reserved.ids})
    targets = data.train[data.target_columns].iloc[reserved.index].reset_index(drop=True)
    columns = [frame, targets]
    for name, pred in verdict.predictions.items():
        names = block_names(name, data, drop_redundant=False)
        values = np.asarray(pred).reshape(len(frame), -1)
        columns.append(pd.DataFrame(values, columns=names))
    pd.concat(columns, axis=1).to_parquet(folder / "guard.parquet", index=False)
