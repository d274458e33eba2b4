"""A served row's answer does not depend on the rows served with it.

Every candidate that can be selected (each combiner method, NNLS, ensemble selection,
scikit-learn's and LightGBM's learners, the Keras MLP and convex model) is fitted into a
:class:`~stacking.stack.FittedStack` on small level-1 data, for every task and every
``meta.features`` kind; its new rows then go through the serving path
(:meth:`FittedStack.level1` and :meth:`FittedStack.combine`) one at a time and as one batch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from stacking.base import ResolvedBaseModel
from stacking.config import (
    BaseModelSpec,
    CandidateConfig,
    DataConfig,
    FeaturesConfig,
    FoldsConfig,
)
from stacking.data import load_dataset
from stacking.engine import BasePredictions
from stacking.folds import make_fold_plan
from stacking.level1 import build_level1
from stacking.meta import make_candidate, refit, short_names
from stacking.stack import Member, fit_stack

N_TRAIN, N_TEST, MODELS = 60, 6, ("a", "b", "c")
TASKS = ["binary", "multiclass", "multilabel", "regression"]
KINDS = ["proba", "logit", "rank"]
KERAS = {"mlp": {"epochs": 3, "random_state": 0}, "convex": {"epochs": 3, "random_state": 0}}
PARAMS = {"weighted": {"weights": [1, 2, 1]}, **KERAS}
LGBM = {"n_estimators": 5, "min_child_samples": 5, "verbose": -1, "random_state": 0, "n_jobs": 1}


def _dataset(tmp_path, task):
    rng = np.random.default_rng(1)
    n = N_TRAIN + N_TEST
    frame = pd.DataFrame({"id": np.arange(n), "age": rng.uniform(0, 1, n)})
    if task == "binary":
        target = {"label": np.array(["no", "yes"])[rng.integers(0, 2, n)]}
    elif task == "multiclass":
        target = {"label": np.array(["ant", "bee", "cat"])[rng.integers(0, 3, n)]}
    elif task == "multilabel":
        target = {"red": rng.integers(0, 2, n), "big": rng.integers(0, 2, n)}
    else:
        target = {"label": rng.normal(size=n)}
    frame = frame.assign(**target)
    frame.iloc[:N_TRAIN].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[N_TRAIN:].drop(columns=list(target)).to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(
        train=tmp_path / "train.csv",
        test=tmp_path / "test.csv",
        id="id",
        target=["red", "big"] if task == "multilabel" else "label",
    )
    return load_dataset(cfg)


def _predictions(data, n_test_rows: int) -> dict[str, BasePredictions]:
    """Noisy copies of the truth for the training rows; noise alone for the new rows."""
    rng = np.random.default_rng(2)
    y = data.y
    preds = {}
    for m in MODELS:
        if data.task == "regression":
            oof, test = y + rng.normal(0, 0.5, len(y)), rng.normal(size=n_test_rows)
        elif data.task == "multilabel":
            oof = np.clip(y + rng.normal(0, 0.3, y.shape), 0.01, 0.99)
            test = rng.uniform(0.01, 0.99, (n_test_rows, y.shape[1]))
        else:
            logits = 2 * np.eye(data.n_outputs)[y] + rng.normal(0, 1, (len(y), data.n_outputs))
            oof = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            test = rng.dirichlet(np.ones(data.n_outputs), n_test_rows)
        preds[m] = BasePredictions(m, oof, test)
    return preds


def _candidates(task: str) -> list[CandidateConfig]:
    names = [n for n in short_names(task) if n != "default" and n not in KERAS]
    specs = [CandidateConfig(estimator=n, params=PARAMS.get(n, {})) for n in names]
    if task != "multilabel":  # and default: logistic / ridge
        lgbm = "lightgbm.LGBMRegressor" if task == "regression" else "lightgbm.LGBMClassifier"
        specs.append(CandidateConfig(estimator=lgbm, params=LGBM))
    return specs


def _fit(tmp_path, task: str, kind: str, candidates: list[CandidateConfig]):
    """The stack of ``candidates`` (and an NNLS level above them) fitted like a run's."""
    data = _dataset(tmp_path, task)
    preds = _predictions(data, N_TEST)
    features = FeaturesConfig(kind=kind, passthrough=["age"])
    plan = make_fold_plan(FoldsConfig(kind="kfold", n_splits=3), data)
    level1 = build_level1(preds, data, features, include_test=False)
    first = [make_candidate(spec, task=task) for spec in candidates]
    top = [make_candidate(CandidateConfig(name="top", estimator="nnls"), task=task)]
    recipes = [
        ResolvedBaseModel(
            name=m,
            spec=BaseModelSpec(path=Path(f"{m}.keras"), input="x", trained_on="external"),
            kind="external",
        )
        for m in MODELS
    ]
    stack, _ = fit_stack(recipes, preds, level1, data, plan, [first, top], features=features)
    return stack, {m: p.test for m, p in preds.items()}, data, level1


def _assert_rows_served_alone_as_in_batch(stack, new, frame, atol: float) -> None:
    batch = stack.combine(stack.level1(new, frame, source="test.csv"))
    assert set(batch) == {m.name for level in stack.levels for m in level}
    for i in range(N_TEST):
        row = {m: p[i : i + 1] for m, p in new.items()}
        alone = stack.combine(stack.level1(row, frame.iloc[i : i + 1], source="test.csv"))
        for name, served in alone.items():
            assert_allclose(served, batch[name][i : i + 1], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_stack_serves_a_row_alone_as_in_its_batch(tmp_path, task, kind):
    stack, new, data, _ = _fit(tmp_path, task, kind, _candidates(task))
    assert {m.name for m in stack.levels[0]} >= {"mean", "nnls", "selection", "weighted"}
    # The same sums in another order (BLAS on 1 row or 6) differ by ~1e-16; a combiner
    # that depends on the batch (rank ranking within it did) moves by ~0.1.
    _assert_rows_served_alone_as_in_batch(stack, new, data.test, atol=1e-12)


@pytest.mark.parametrize("task", TASKS)
def test_stack_keras_meta_models_serve_a_row_alone_as_in_its_batch(tmp_path, task):
    """The Keras learners, refitted on every row only (a fit costs ~0.3 s): the MLP on rank
    features, the convex model on the blocks (which no feature kind changes)."""
    stack, new, data, level1 = _fit(tmp_path, task, "rank", [CandidateConfig(estimator="mean")])
    members = []
    for name, params in KERAS.items():
        candidate = make_candidate(CandidateConfig(estimator=name, params=params), task=task)
        X = level1.blocks if candidate.uses_blocks else level1.features.to_numpy()
        if "columns_per_model" in candidate.estimator.get_params():
            candidate.estimator.set_params(columns_per_model=level1.columns_per_model)
        fitted = refit(candidate, X, data.y)
        members.append(Member(name, candidate.uses_blocks, fitted, list(MODELS)))
    keras_stack = replace(stack, levels=[members], ensemble="mlp")
    # Keras computes in float32.
    _assert_rows_served_alone_as_in_batch(keras_stack, new, data.test, atol=1e-6)
