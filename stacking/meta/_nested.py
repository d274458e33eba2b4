"""Scores of the whole meta-level procedure: nested cross-validation and repeated splits.

A leaderboard score is the out-of-fold score of one candidate. Picking the best of N
candidates on the same rows makes the winner's score optimistic, by an amount the
leaderboard cannot show. :func:`nested_selection` measures it the way R's SuperLearner
does with ``CV.SuperLearner`` (Polley and van der Laan): an *outer* cross-validation of
the whole procedure "cross-fit every candidate of every level, keep the best of the last
level, refit it". For outer fold *k* the procedure runs on the level-1 rows of the other
folds only (its inner folds are the fold plan's other folds, so groups and strata stay
whole), and the winner it picks predicts fold *k*. Those predictions, scored like any
entry, are the honest score of the selection.

The base models are frozen, so their level-1 features are the fold plan's OOF
predictions in both loops: the nested score measures the optimism of choosing among
meta-models, not the base models' own training.

:func:`repeated_oof` cross-fits the levels on further re-splits of the level-1 rows
(repeated cross-validation), so a candidate's score can be given with its spread over
splits instead of for one split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stacking.errors import ConfigError
from stacking.folds import FoldPlan
from stacking.level1 import next_level_input
from stacking.meta._candidates import (
    Candidate,
    cross_fit,
    predict_output,
    refit,
    with_layout,
)
from stacking.metrics import get_metric


@dataclass
class NestedScore:
    """The outer-fold predictions of the selection procedure and who won each fold."""

    oof: np.ndarray
    winners: list[str]


def fit_levels(
    blocks: np.ndarray,
    features: np.ndarray,
    y: np.ndarray,
    plan: FoldPlan,
    levels: list[list[Candidate]],
    *,
    task: str,
    n_outputs: int,
    columns_per_model: int,
    sample_weight: np.ndarray | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Every level cross-fitted on ``plan`` as the stack fits it: per level, each
    candidate's OOF predictions; with ``test`` (blocks, features of other rows), also each
    candidate refit on all rows and its predictions of those rows."""
    oofs: list[dict[str, np.ndarray]] = []
    tests: list[dict[str, np.ndarray]] = []
    X_blocks, X_features = blocks, features
    T_blocks, T_features = test if test is not None else (None, None)
    for candidates in levels:
        level_oof, level_test = {}, {}
        for cand in candidates:
            with_layout(cand, columns_per_model)
            X = X_blocks if cand.uses_blocks else X_features
            level_oof[cand.name] = cross_fit(
                cand, X, y, plan, task=task, n_outputs=n_outputs, sample_weight=sample_weight
            )
            if test is not None:
                model = refit(cand, X, y, sample_weight=sample_weight)
                T = T_blocks if cand.uses_blocks else T_features
                assert T is not None  # set from ``test`` whenever ``test`` is given
                level_test[cand.name] = predict_output(model, T, task=task, n_outputs=n_outputs)
        oofs.append(level_oof)
        tests.append(level_test)
        X_blocks = X_features = next_level_input(list(level_oof.values()), task)
        if test is not None:
            T_blocks = T_features = next_level_input(list(level_test.values()), task)
    return oofs, tests


def _best(
    oof: dict[str, np.ndarray],
    y: np.ndarray,
    metric_name: str,
    task: str,
    sample_weight: np.ndarray | None,
) -> str:
    """The candidate the experiment would select: best score, the first one on ties."""
    metric = get_metric(metric_name)
    best, best_score = "", float("nan")
    for name, pred in oof.items():
        score = metric(y, pred, task=task, sample_weight=sample_weight)
        if not best or metric.better(score, best_score):
            best, best_score = name, score
    return best


def check_nested(plan: FoldPlan) -> None:
    """Refuse a plan too small for an inner loop (the experiment calls this early)."""
    if plan.n_splits < 3:
        raise ConfigError(
            "meta.nested needs a fold plan of at least 3 folds (its inner loop uses the "
            f"other K-1). Received: {plan.n_splits} folds; raise folds.n_splits or turn "
            "meta.nested off"
        )


def nested_selection(
    blocks: np.ndarray,
    features: np.ndarray,
    y: np.ndarray,
    plan: FoldPlan,
    levels: list[list[Candidate]],
    *,
    metric: str,
    task: str,
    n_outputs: int,
    columns_per_model: int,
    sample_weight: np.ndarray | None = None,
) -> NestedScore:
    """Outer-fold predictions of "fit every candidate, keep the best of the last level".

    Costs ``K x (K - 1 + 1)`` fits per candidate for a plan of ``K`` folds, about ``K``
    times the stack's own meta-level fitting. Needs ``K >= 3`` (the inner loop has K-1).
    """
    check_nested(plan)
    y = np.asarray(y)
    shape = (len(y),) if task == "regression" else (len(y), n_outputs)
    oof = np.zeros(shape)
    winners = []
    for k in range(plan.n_splits):
        train, test = plan.train_index(k), plan.test_index(k)
        inner_folds = plan.folds[train]
        inner_folds = inner_folds - (inner_folds > k)  # renumbered 0..K-2
        inner = FoldPlan(ids=plan.ids[train], folds=inner_folds)
        w = None if sample_weight is None else sample_weight[train]
        level_oofs, level_tests = fit_levels(
            blocks[train],
            features[train],
            y[train],
            inner,
            levels,
            task=task,
            n_outputs=n_outputs,
            columns_per_model=columns_per_model,
            sample_weight=w,
            test=(blocks[test], features[test]),
        )
        winner = _best(level_oofs[-1], y[train], metric, task, w)
        oof[test] = level_tests[-1][winner]
        winners.append(winner)
    return NestedScore(oof=oof, winners=winners)


def repeated_oof(
    blocks: np.ndarray,
    features: np.ndarray,
    y: np.ndarray,
    plans: list[FoldPlan],
    levels: list[list[Candidate]],
    *,
    task: str,
    n_outputs: int,
    columns_per_model: int,
    sample_weight: np.ndarray | None = None,
) -> dict[str, list[np.ndarray]]:
    """Each meta candidate's OOF predictions on each plan of ``plans`` (one per repeat)."""
    out: dict[str, list[np.ndarray]] = {}
    for plan in plans:
        level_oofs, _ = fit_levels(
            blocks,
            features,
            y,
            plan,
            levels,
            task=task,
            n_outputs=n_outputs,
            columns_per_model=columns_per_model,
            sample_weight=sample_weight,
        )
        for level in level_oofs:
            for name, pred in level.items():
                out.setdefault(name, []).append(pred)
    return out
