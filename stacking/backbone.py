"""The third honest way: a frozen backbone with a head cross-fitted on the fold plan.

A single frozen model (a pre-trained network, a self-supervised encoder) is used as a
feature extractor: its ``layer``'s output is computed once for every row and cached.
A light head (any scikit-learn estimator, ``head:`` in the config) is then fitted on
the embeddings of every fold but *k* and predicts fold *k*, so each OOF prediction
comes from a head that never saw the row. Test rows get the mean of the K heads, as
with fold models.

The backbone itself must not have been trained on these rows' labels; a model beside
this experiment's fold models is refused (:func:`stacking.base.resolve_base_model`).
"""

from __future__ import annotations

import numpy as np

from stacking.config import CandidateConfig
from stacking.errors import ConfigError
from stacking.folds import FoldPlan
from stacking.meta import cross_fit, make_candidate, predict_output
from stacking.meta._candidates import FittedEstimator


def cross_fit_head(
    name: str,
    head: str | CandidateConfig,
    embeddings: np.ndarray,
    test_embeddings: np.ndarray | None,
    y: np.ndarray,
    plan: FoldPlan,
    *,
    task: str,
    n_outputs: int,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[FittedEstimator]]:
    """``(oof, test, heads)``: the head's honest predictions and its K fold fits."""
    where = f"base_models.{name}.head"
    candidate = make_candidate(head, task=task, where=where)
    if candidate.uses_blocks:
        raise ConfigError(
            f"{where}: {candidate.name!r} combines base-model probabilities; a head needs a "
            "learned estimator on embeddings, e.g. logistic or an import path"
        )
    candidate.name = f"{name} head"
    oof, heads = cross_fit(
        candidate,
        embeddings,
        y,
        plan,
        task=task,
        n_outputs=n_outputs,
        sample_weight=sample_weight,
        return_models=True,
    )
    test = None
    if test_embeddings is not None:
        test = predict_heads(heads, test_embeddings, task=task, n_outputs=n_outputs)
    return oof, test, heads


def predict_heads(
    heads: list[FittedEstimator], embeddings: np.ndarray, *, task: str, n_outputs: int
) -> np.ndarray:
    """The mean of the fold heads' predictions for new rows."""
    return np.mean(
        [predict_output(h, embeddings, task=task, n_outputs=n_outputs) for h in heads], axis=0
    )
