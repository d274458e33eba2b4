"""Interpretability: each fitted meta-model's weights as a table (base model → weight).

Learners that combine probability blocks (convex, NNLS, ensemble selection, weighted
mean) expose ``weights_``: one weight per base model, or per base model and class.
Linear scikit-learn models expose ``coef_``: one weight per level-1 feature, and the
feature name ``<model>__<output>`` says which base model it belongs to. The linear
defaults standardise their inputs first (a Pipeline); their weights are given per unit of
the level-1 feature itself (``coef_ / scale_``), as an unscaled model's would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from stacking.meta._candidates import FittedEstimator

COLUMNS = ["candidate", "base_model", "feature", "output", "weight"]
# One row of the table, in the order of COLUMNS.
Row: TypeAlias = tuple[str, str, str, str, float]


def _rows_from_weights(
    name: str, weights: ArrayLike, models: Sequence[str], outputs: Sequence[str]
) -> list[Row]:
    weights = np.asarray(weights, dtype=float)
    if weights.ndim == 1:
        return [(name, m, "", "all", float(w)) for m, w in zip(models, weights)]
    return [
        (name, m, "", str(outputs[j]) if j < len(outputs) else str(j), float(weights[i, j]))
        for i, m in enumerate(models)
        for j in range(weights.shape[1])
    ]


def _rows_from_coef(
    name: str, coef: ArrayLike, features: Sequence[str], outputs: Sequence[str]
) -> list[Row]:
    coef = np.atleast_2d(np.asarray(coef, dtype=float))
    labels = outputs if coef.shape[0] == len(outputs) else [outputs[-1]] * coef.shape[0]
    return [
        (name, f.split("__")[0] if "__" in f else "", f, str(labels[j]), float(coef[j, i]))
        for j in range(coef.shape[0])
        for i, f in enumerate(features)
    ]


def _coef(model: FittedEstimator) -> np.ndarray | None:
    """``coef_`` of a linear model, or of a (StandardScaler, linear model) Pipeline in
    units of its unscaled inputs; None for anything else."""
    steps = getattr(model, "steps", None)
    if steps is None:
        return getattr(model, "coef_", None)
    if len(steps) != 2 or not hasattr(steps[1][1], "coef_"):
        return None
    scale = getattr(steps[0][1], "scale_", None)
    if scale is None:
        return None
    return np.asarray(steps[1][1].coef_, dtype=float) / scale


def weights_table(fitted: dict, inputs: dict, output_names: list[str]) -> pd.DataFrame:
    """Rows ``(candidate, base_model, feature, output, weight)`` for every candidate with
    readable weights; ``inputs[name]`` is ``(block model names, feature names)``."""
    rows = []
    for name, model in fitted.items():
        models, features = inputs[name]
        if hasattr(model, "weights_"):
            rows += _rows_from_weights(name, model.weights_, models, output_names)
        elif (
            (coef := _coef(model)) is not None
            and np.ndim(coef) <= 2
            and np.shape(coef)[-1] == len(features)
        ):
            rows += _rows_from_coef(name, coef, features, output_names)
    return pd.DataFrame(rows, columns=COLUMNS)


def models_used(
    fitted: dict, inputs: dict, base_models: list[str], output_names: list[str]
) -> dict[str, list[str]]:
    """The base models each candidate actually uses: those with a non-zero weight.

    ``inputs`` is as for :func:`weights_table`. A candidate whose weights cannot be read
    (a network, a tree model) uses every model it reads. A later level's candidate uses
    the base models of the earlier candidates it weights. Candidates must come in level
    order (as the stack lists them). Base-model names keep the order of ``base_models``.
    """
    table = weights_table(fitted, inputs, output_names)
    used: dict[str, set[str]] = {m: {m} for m in base_models}
    for name in fitted:
        models, features = inputs[name]
        rows = table[table.candidate == name]
        if len(rows):
            kept = rows[rows.weight.abs() > 0].base_model
        else:
            kept = pd.Series([*models, *(f.split("__")[0] for f in features if "__" in f)])
        used[name] = set().union(*(used[m] for m in kept.unique() if m in used))
    return {n: [m for m in base_models if m in used[n]] for n in fitted}
