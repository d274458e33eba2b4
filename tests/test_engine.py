"""The OOF engine: which model predicts which row, test averaging, logits, caching."""

from __future__ import annotations

import numpy as np
import pytest

from stacking.cache import LocalCacheStore, NullCacheStore
from stacking.config import load_config
from stacking.data import load_dataset
from stacking.engine import TrainRows, predict_base_models, to_representation
from stacking.errors import BaseModelError
from stacking.executors import LocalExecutor
from stacking.folds import make_fold_plan
from stacking.stack import resolve_base_models


def _recipes(project):
    cfg = load_config(project.config_path)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    recipes = resolve_base_models(cfg, data, plan)
    view = cfg.data.views["x"]
    train = TrainRows({r.name: [data.view(view)] for r in recipes}, plan, data.y)
    rows = {r.name: [data.view(view, which="test")] for r in recipes}
    return data, plan, recipes, train, rows


def test_predict_base_models_test_rows_are_mean_of_fold_models(multiclass_project):
    import keras

    _data, _plan, recipes, train, rows = _recipes(multiclass_project)
    preds = predict_base_models(
        recipes,
        task="multiclass",
        n_outputs=3,
        executor=LocalExecutor(False),
        cache=NullCacheStore(),
        train=train,
        rows=rows,
    )
    x_test = rows["wide"][0]
    folds = [keras.models.load_model(p) for p in recipes[0].fold_paths]
    expected = np.mean([m(x_test, training=False).numpy() for m in folds], axis=0)
    np.testing.assert_allclose(preds["wide"].test, expected, atol=1e-6)
    # The logit model's outputs are mapped through softmax: rows are probabilities.
    np.testing.assert_allclose(preds["logit"].oof.sum(axis=1), 1.0, atol=1e-6)
    assert preds["logit"].oof.min() >= 0
    assert preds["logit"].outputs_are == "logits"


def test_predict_base_models_new_rows_alone_equal_the_training_pass(multiclass_project):
    """Serving predicts new rows without training rows: same numbers as training's pass."""
    _data, _plan, recipes, train, rows = _recipes(multiclass_project)
    kw = dict(task="multiclass", n_outputs=3, executor=LocalExecutor(False), cache=NullCacheStore())
    both = predict_base_models(recipes, train=train, rows=rows, **kw)
    alone = predict_base_models(recipes, rows=rows, **kw)
    for name in both:
        assert alone[name].oof is None
        np.testing.assert_array_equal(alone[name].test, both[name].test)


def test_predict_base_models_resumes_from_cache(multiclass_project, tmp_path):
    _data, _plan, recipes, train, rows = _recipes(multiclass_project)
    cache = LocalCacheStore(tmp_path / "cache")
    kwargs = dict(task="multiclass", n_outputs=3, executor=LocalExecutor(False), cache=cache)
    first = predict_base_models(recipes[:1], train=train, rows=rows, **kwargs)
    assert (first["wide"].computed, first["wide"].cached) == (6, 0)
    # Simulate a run killed after some entries were written: drop two of them.
    entries = sorted((tmp_path / "cache").glob("*/*.npy"))
    for entry in entries[:2]:
        entry.unlink()
    second = predict_base_models(recipes[:1], train=train, rows=rows, **kwargs)
    assert (second["wide"].computed, second["wide"].cached) == (2, 4)
    np.testing.assert_array_equal(first["wide"].oof, second["wide"].oof)


class _RefusingExecutor(LocalExecutor):
    """An executor that must not be started: a warm rerun has nothing to predict."""

    def run(self, jobs, on_result):
        raise AssertionError(f"the executor was started for {len(jobs)} jobs")


def test_predict_base_models_fully_cached_starts_no_executor(multiclass_project, tmp_path):
    _data, _plan, recipes, train, rows = _recipes(multiclass_project)
    kwargs = dict(task="multiclass", n_outputs=3, cache=LocalCacheStore(tmp_path / "cache"))
    cold = predict_base_models(
        recipes, train=train, rows=rows, executor=LocalExecutor(False), **kwargs
    )
    warm = predict_base_models(
        recipes, train=train, rows=rows, executor=_RefusingExecutor(False), **kwargs
    )
    for name, pred in warm.items():
        assert pred.computed == 0 and pred.cached == cold[name].computed > 0
        np.testing.assert_array_equal(pred.oof, cold[name].oof)
        np.testing.assert_array_equal(pred.test, cold[name].test)


@pytest.mark.parametrize(
    ("raw", "task", "n_outputs", "expected"),
    [
        ([np.array([[0.2], [0.9]])], "binary", 2, np.array([[0.8, 0.2], [0.1, 0.9]])),
        ([np.array([[0.0], [2.0]])], "binary", 2, np.array([[0.5, 0.5], [0.1192, 0.8808]])),
        ([np.array([[1.0, 3.0]])], "multiclass", 2, np.array([[0.1192, 0.8808]])),
        ([np.array([[3.0], [4.0]])], "regression", 1, np.array([3.0, 4.0])),
    ],
)
def test_to_representation(raw, task, n_outputs, expected):
    got = to_representation(raw, name="m", task=task, n_outputs=n_outputs, outputs_are="auto")
    np.testing.assert_allclose(got[0], expected, atol=1e-4)


@pytest.mark.parametrize(
    ("raw", "task", "n_outputs", "match"),
    [
        (np.zeros((2, 4)), "multiclass", 3, "outputs 4 values per row but the target has 3"),
        (np.full((2, 3), 0.2), "multiclass", 3, "do not sum to 1"),
        (np.zeros((2, 2)), "regression", 1, "regression task needs 1"),
    ],
)
def test_to_representation_errors(raw, task, n_outputs, match):
    with pytest.raises(BaseModelError, match=match):
        to_representation([raw], name="m", task=task, n_outputs=n_outputs, outputs_are="auto")
