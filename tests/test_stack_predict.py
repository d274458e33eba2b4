"""FittedStack's predict path by value, without TensorFlow: prediction-file members.

A member given by prediction files has no model: rows to serve carry its predictions in
columns named as its level-1 features. A stack of such members, with meta-models fitted
here, is predicted through ``FittedStack.predict_proba`` and compared with the same
numbers computed directly (NumPy and scikit-learn), level by level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy.stats import rankdata
from sklearn.linear_model import LinearRegression, LogisticRegression

from stacking.base import ResolvedBaseModel
from stacking.config import BaseModelSpec, FeaturesConfig, ViewConfig
from stacking.errors import DataError
from stacking.meta._combiners import CombinerClassifier, CombinerRegressor
from stacking.stack import FittedStack, Member

CLASSES = ["cat", "dog", "eel"]
MODELS = ["a", "b"]
N = 12


def _columns(model: str, task: str) -> list[str]:
    if task == "regression":
        return [f"{model}__target"]
    names = CLASSES[1:2] if task == "binary" else CLASSES
    return [f"{model}__{c}" for c in names]


def _resolved(name: str, kind: str, views: list, outputs_are: str | None) -> ResolvedBaseModel:
    """A resolved base model built by hand (no files: the rows carry its predictions)."""
    return ResolvedBaseModel.model_construct(
        name=name,
        spec=BaseModelSpec.model_construct(),
        kind=kind,
        fold_paths=[],
        row_paths=[],
        views=views,
        fitted_outputs_are=outputs_are,
        heads=[],
        predictions=None,
    )


def _recipe(model: str, task: str) -> ResolvedBaseModel:
    views = [ViewConfig(columns=_columns(model, task), dtype="float64")]
    return _resolved(model, "predictions", views, "proba")


def _probas(rng, n: int, n_classes: int) -> np.ndarray:
    p = rng.uniform(0.05, 1.0, size=(n, n_classes))
    return p / p.sum(axis=1, keepdims=True)


def _frame(given: dict[str, np.ndarray], task: str) -> pd.DataFrame:
    frame = pd.DataFrame({"row_id": np.arange(100, 100 + len(given["a"]))})
    for m, p in given.items():
        values = p[:, 1:] if task == "binary" else p.reshape(len(p), -1)
        frame[_columns(m, task)] = values
    return frame


def _stack(task: str, features: FeaturesConfig, levels, reference=None) -> FittedStack:
    classes = [] if task == "regression" else (CLASSES[:2] if task == "binary" else CLASSES)
    return FittedStack(
        task=task,
        classes=classes,
        output_names=["target"] if task == "regression" else classes,
        id_column="row_id",
        base_models=[_recipe(m, task) for m in MODELS],
        features=features,
        levels=levels,
        ensemble="top",
        reference=reference or {},
    )


def test_multiclass_stack_predicts_each_level_from_the_one_below():
    rng = np.random.default_rng(0)
    y_train = np.arange(60) % 3
    train = {m: _probas(rng, 60, 3) for m in MODELS}
    new = {m: _probas(rng, N, 3) for m in MODELS}
    blocks_train = np.hstack([train["a"], train["b"]])
    mean = CombinerClassifier().fit(blocks_train, y_train)
    logreg = LogisticRegression(C=0.5).fit(blocks_train, y_train)
    top_train = np.hstack([mean.predict_proba(blocks_train), logreg.predict_proba(blocks_train)])
    top = CombinerClassifier("weighted", weights=[1, 3]).fit(top_train, y_train)
    stack = _stack(
        "multiclass",
        FeaturesConfig(kind="proba"),
        [
            [Member("mean", True, mean), Member("logreg", False, logreg)],
            [Member("top", True, top)],
        ],
    )
    frame = _frame(new, "multiclass").sample(frac=1.0, random_state=1)  # shuffled index

    a, b = new["a"][frame.index], new["b"][frame.index]
    level2_mean = (a + b) / 2
    level2_logreg = logreg.predict_proba(np.hstack([a, b]))
    expected_top = (level2_mean + 3 * level2_logreg) / 4

    assert stack.n_outputs == 3
    assert_allclose(stack.predict_proba(frame), expected_top, rtol=1e-12)
    every = stack.combine(stack.level1({"a": a, "b": b}, frame, source="rows"))
    assert list(every) == ["mean", "logreg", "top"]
    assert_allclose(every["mean"], level2_mean, rtol=1e-12)
    assert_allclose(every["logreg"], level2_logreg, rtol=1e-12)
    assert_allclose(every["top"], expected_top, rtol=1e-12)


def test_binary_stack_reads_the_positive_class_and_logit_features():
    rng = np.random.default_rng(1)
    y_train = np.arange(40) % 2
    train = {m: _probas(rng, 40, 2) for m in MODELS}
    new = {m: _probas(rng, N, 2) for m in MODELS}

    def logit(p):
        return np.log(p[:, 1] / p[:, 0])

    feats_train = np.column_stack([logit(train["a"]), logit(train["b"])])
    logreg = LogisticRegression().fit(feats_train, y_train)
    mean = CombinerClassifier().fit(np.column_stack([train["a"][:, 1], train["b"][:, 1]]), y_train)
    stack = _stack(
        "binary",
        FeaturesConfig(kind="logit"),
        [[Member("top", False, logreg), Member("mean", True, mean)]],
    )
    frame = _frame(new, "binary")
    frame["index"] = "a user column named like pandas' index"
    level1 = stack.level1(new, frame, source="rows")
    assert level1.models == MODELS
    assert level1.columns_per_model == 1 and isinstance(level1.columns_per_model, int)
    every = stack.combine(level1)
    assert_allclose(every["mean"][:, 1], (new["a"][:, 1] + new["b"][:, 1]) / 2, rtol=1e-12)
    assert_allclose(level1.blocks, np.column_stack([new["a"][:, 1], new["b"][:, 1]]))
    expected = logreg.predict_proba(np.column_stack([logit(new["a"]), logit(new["b"])]))
    assert stack.n_outputs == 2
    assert_allclose(stack.predict_proba(frame), expected, rtol=1e-9)


def test_rank_features_of_served_rows_place_them_among_the_training_rows():
    rng = np.random.default_rng(2)
    y_train = np.arange(30) % 2
    train = {m: _probas(rng, 30, 2) for m in MODELS}
    new = {m: _probas(rng, 5, 2) for m in MODELS}
    reference = {m: train[m][:, 1:] for m in MODELS}
    ranks_train = np.column_stack([rankdata(train[m][:, 1]) / 30 for m in MODELS])
    logreg = LogisticRegression().fit(ranks_train, y_train)
    stack = _stack(
        "binary", FeaturesConfig(kind="rank"), [[Member("top", False, logreg)]], reference
    )
    # Each served row's rank: the share of training scores <= it, whatever rows come along.
    ranks = np.column_stack(
        [(train[m][:, 1][None, :] <= new[m][:, 1][:, None]).mean(axis=1) for m in MODELS]
    )
    frame = _frame(new, "binary")
    level1 = stack.level1(new, frame, source="rows")
    assert_allclose(level1.features.to_numpy(), ranks, rtol=1e-12)
    alone = np.vstack([stack.predict_proba(frame.iloc[[i]]) for i in range(5)])
    assert_allclose(stack.predict_proba(frame), alone, rtol=1e-12)
    assert_allclose(alone, logreg.predict_proba(ranks), rtol=1e-12)


def test_regression_stack_predicts_values():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=50)
    train = {m: (truth + rng.normal(0, s, 50))[:, None] for m, s in zip(MODELS, [0.3, 1.0])}
    new = {m: rng.normal(size=(N, 1)) for m in MODELS}
    X_train = np.hstack([train["a"], train["b"]])
    linear = LinearRegression().fit(X_train, truth)
    median = CombinerRegressor("median").fit(X_train, truth)
    top = CombinerRegressor("weighted", weights=[2, 1]).fit(
        np.column_stack([linear.predict(X_train), median.predict(X_train)]), truth
    )
    stack = _stack(
        "regression",
        FeaturesConfig(kind="logit"),  # values stay values
        [
            [Member("linear", False, linear), Member("median", True, median)],
            [Member("top", True, top)],
        ],
    )
    X_new = np.hstack([new["a"], new["b"]])
    expected = (2 * linear.predict(X_new) + np.median(X_new, axis=1)) / 3
    assert stack.n_outputs == 1
    out = stack.predict_proba(_frame(new, "regression"))
    assert out.shape == (N,)
    assert_allclose(out, expected, rtol=1e-12)


def test_stack_given_columns_and_the_missing_ones_refused():
    stack = _stack("multiclass", FeaturesConfig(), [[]])
    assert stack.given_columns() == {
        "a": _columns("a", "multiclass"),
        "b": _columns("b", "multiclass"),
    }
    rng = np.random.default_rng(4)
    frame = _frame({m: _probas(rng, 3, 3) for m in MODELS}, "multiclass")
    inputs = stack.read_inputs(frame, source="rows")
    assert list(inputs) == MODELS
    assert_allclose(inputs["b"][0].to_numpy(), frame[_columns("b", "multiclass")].to_numpy())
    with pytest.raises(
        DataError,
        match=r"^new\.csv lacks column\(s\) \['b__dog'\] of base model 'b': it is given by "
        r"prediction files .* in columns \['b__cat', 'b__dog', 'b__eel'\]; add them \(the "
        r"model's predictions of these rows\)$",
    ):
        stack.predict_proba(frame.drop(columns=["b__dog"]), source="new.csv")
    with pytest.raises(DataError, match=r"^new\.csv has no rows to predict$"):
        stack.predict_proba(frame.iloc[:0], source="new.csv")
    with pytest.raises(DataError, match=r"^the input table has no rows to predict$"):
        stack.predict_proba(frame.iloc[:0])


def test_stack_passthrough_columns_missing_from_rows_are_named_with_the_table():
    rng = np.random.default_rng(5)
    new = {m: _probas(rng, 4, 3) for m in MODELS}
    frame = _frame(new, "multiclass")
    stack = _stack("multiclass", FeaturesConfig(passthrough=["f_0"]), [[]])
    with pytest.raises(DataError, match=r"new\.csv.*f_0|f_0.*new\.csv"):
        stack.predict_proba(frame, source="new.csv")
    frame["f_0"] = np.arange(4.0)
    level1 = stack.level1(new, frame, source="rows")
    assert_allclose(level1.features["f_0"], np.arange(4.0))


def _image_stack() -> FittedStack:
    recipe = _resolved("cnn", "folds", [ViewConfig(image="path", size=[2, 2])], None)
    return FittedStack(
        task="binary",
        classes=[0, 1],
        output_names=["0", "1"],
        id_column="row_id",
        base_models=[recipe],
        features=FeaturesConfig(),
        levels=[[]],
    )


def test_stack_reads_image_rows_from_root_and_names_them_by_id(tmp_path):
    # The rows' images are read before any model runs: a missing one is named by its row
    # id and table, relative to the root given (or, for a served model, without a path).
    frame = pd.DataFrame({"row_id": [101, 102], "path": ["a.png", "b.png"]})
    with pytest.raises(
        DataError,
        match=rf"^image '{tmp_path / 'a.png'}' \(row id 101, column 'path' of new\.csv\) "
        "does not exist",
    ):
        _image_stack().predict_proba(frame, source="new.csv", root=tmp_path)
    from stacking.images import ImageAccess

    with pytest.raises(DataError, match=r"^row 0 \(id 101\), column 'path': ") as info:
        _image_stack().predict_proba(frame, access=ImageAccess.serving(tmp_path))
    assert tmp_path.name not in str(info.value)
