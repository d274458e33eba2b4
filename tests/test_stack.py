"""The fitted stack: serving runs the experiment's own code path, for every task and kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacking import Experiment
from stacking.predictor import load_predictor
from stacking.stack import FittedStack, load_stack

TASKS = ["binary", "multiclass", "multilabel", "regression"]
KINDS = ["proba", "logit", "rank"]


def _ensemble(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("ensemble__")]].to_numpy()


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """One prediction cache per task: the base models predict once for the three kinds."""
    return {task: tmp_path_factory.mktemp(f"cache-{task}") for task in TASKS}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task", TASKS)
def test_served_stack_equals_the_runs_test_predictions(
    project_factory, caches, tmp_path, task, kind
):
    project = project_factory(task)
    candidates = ["default", "mean"] if task != "multilabel" else ["mean", "nnls"]
    cfg = project.config(
        tmp_path,
        **{
            "meta.features": {"kind": kind, "passthrough": ["f_0"]},
            "meta.candidates": candidates,
            "meta.levels": [{"candidates": [{"name": "top", "estimator": "nnls"}]}],
            "meta.bootstrap": 0,
            "tracking.enabled": False,
            "cache.dir": str(caches[task]),
        },
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    test = pd.read_parquet(project.root / "test.parquet")

    served = load_predictor(tmp_path / "out").predict(test)
    np.testing.assert_allclose(
        _ensemble(served), _ensemble(result.test_predictions), rtol=0, atol=1e-12
    )
    assert served["prediction"].tolist() == result.test_predictions["prediction"].tolist()
    # The in-memory stack of the run and the one read back from disk are the same object
    # kind, with the same recipe: no second implementation for serving.
    assert isinstance(result.predictor.stack, FittedStack)
    loaded = load_stack(tmp_path / "out")
    assert [r.name for r in loaded.base_models] == [
        r.name for r in result.predictor.stack.base_models
    ]
    assert loaded.ensemble == result.ensemble


def test_stack_refuses_an_empty_frame(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False, "meta.bootstrap": 0})
    Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    stack = load_stack(tmp_path / "out")
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    from stacking.errors import DataError

    with pytest.raises(DataError, match="no rows to predict"):
        stack.predict_proba(test.iloc[:0])
