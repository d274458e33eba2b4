"""Level-1 matrix: column names, dropped columns, logit/rank features, passthrough, FWLS."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from stacking.config import DataConfig, FeaturesConfig
from stacking.data import load_dataset
from stacking.engine import BasePredictions
from stacking.errors import DataError
from stacking.level1 import build_level1

N_TRAIN, N_TEST = 10, 4


def _dataset(tmp_path, task, *, with_test=True):
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_TEST
    frame = pd.DataFrame(
        {"age": np.arange(n) * 1.5, "dose": rng.uniform(1, 2, n), "site": ["a", "b"] * (n // 2)}
    )
    if task == "binary":
        target = {"label": np.array(["no", "yes"])[np.arange(n) % 2]}
    elif task == "multiclass":
        target = {"label": np.array(["cat", "dog", "emu"])[np.arange(n) % 3]}
    elif task == "multilabel":
        target = {"red": np.arange(n) % 2, "big": (np.arange(n) // 2) % 2}
    else:
        target = {"label": rng.normal(size=n) + 0.5}
    frame = frame.assign(**target)
    frame.iloc[:N_TRAIN].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[N_TRAIN:].drop(columns=list(target)).to_csv(tmp_path / "test.csv", index=False)
    cfg = DataConfig(
        train=tmp_path / "train.csv",
        test=tmp_path / "test.csv" if with_test else None,
        target=["red", "big"] if task == "multilabel" else "label",
    )
    return load_dataset(cfg)


def _predictions(data, names=("cnn", "rnn"), seed=0, with_test=True):
    rng = np.random.default_rng(seed)
    preds = {}
    for name in names:

        def draw(n):
            if data.task == "regression":
                return rng.normal(size=n)
            if data.task == "multilabel":
                return rng.uniform(0.05, 0.95, size=(n, data.n_outputs))
            return rng.dirichlet(np.ones(data.n_outputs), size=n)

        preds[name] = BasePredictions(name, draw(N_TRAIN), draw(N_TEST) if with_test else None)
    return preds


def _logit(p):
    return np.log(p / (1 - p))


def test_engine_and_level1_import_without_tensorflow():
    code = (
        "import sys, stacking.engine, stacking.level1; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["proba", "logit", "rank"])
def test_level1_binary_drops_redundant_column(tmp_path, kind):
    data = _dataset(tmp_path, "binary")
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig(kind=kind))
    assert list(level1.features.columns) == ["cnn__yes", "rnn__yes"]
    assert list(level1.test_features.columns) == ["cnn__yes", "rnn__yes"]
    assert level1.columns_per_model == 1
    assert_array_equal(
        level1.blocks, np.column_stack([preds["cnn"].oof[:, 1], preds["rnn"].oof[:, 1]])
    )


def test_level1_binary_keeps_both_columns_when_asked(tmp_path):
    data = _dataset(tmp_path, "binary")
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig(drop_redundant=False))
    assert list(level1.features.columns) == ["cnn__no", "cnn__yes", "rnn__no", "rnn__yes"]
    assert_array_equal(level1.features.to_numpy(), np.hstack([preds["cnn"].oof, preds["rnn"].oof]))


def test_level1_multiclass_keeps_every_class(tmp_path):
    data = _dataset(tmp_path, "multiclass")
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig())
    assert list(level1.features.columns) == [
        f"{m}__{c}" for m in ("cnn", "rnn") for c in ("cat", "dog", "emu")
    ]
    assert level1.models == ["cnn", "rnn"]
    assert level1.columns_per_model == 3
    expected = np.hstack([preds["cnn"].oof, preds["rnn"].oof])
    assert_array_equal(level1.features.to_numpy(), expected)
    assert_array_equal(level1.blocks, expected)
    assert_array_equal(level1.test_blocks, np.hstack([preds["cnn"].test, preds["rnn"].test]))


def test_level1_regression_names_pred(tmp_path):
    data = _dataset(tmp_path, "regression")
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig(kind="logit"))  # no-op for regression
    assert list(level1.features.columns) == ["cnn__pred", "rnn__pred"]
    assert_array_equal(level1.features["cnn__pred"], preds["cnn"].oof)
    assert_array_equal(level1.test_features["rnn__pred"], preds["rnn"].test)


def test_level1_multilabel_names_labels(tmp_path):
    data = _dataset(tmp_path, "multilabel")
    level1 = build_level1(_predictions(data, names=("cnn",)), data, FeaturesConfig())
    assert list(level1.features.columns) == ["cnn__red", "cnn__big"]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("binary", lambda p: _logit(p[:, 1:])),
        ("multilabel", _logit),
        ("multiclass", np.log),
    ],
)
def test_level1_logit_values(tmp_path, task, expected):
    data = _dataset(tmp_path, task)
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig(kind="logit"))
    assert_allclose(
        level1.features.to_numpy(), np.hstack([expected(preds[m].oof) for m in ("cnn", "rnn")])
    )
    assert_allclose(
        level1.test_features.to_numpy(),
        np.hstack([expected(preds[m].test) for m in ("cnn", "rnn")]),
    )


def test_level1_logit_of_certain_probability_is_finite(tmp_path):
    data = _dataset(tmp_path, "binary", with_test=False)
    oof = np.tile([[0.0, 1.0], [1.0, 0.0]], (N_TRAIN // 2, 1))
    level1 = build_level1(
        {"cnn": BasePredictions("cnn", oof, None)}, data, FeaturesConfig(kind="logit")
    )
    values = level1.features["cnn__yes"].to_numpy()
    assert np.isfinite(values).all()
    assert values[0] > 10 and values[1] < -10


def test_level1_rank_features_in_unit_interval(tmp_path):
    data = _dataset(tmp_path, "multiclass")
    preds = _predictions(data)
    ranks = build_level1(preds, data, FeaturesConfig(kind="rank")).features
    values = ranks.to_numpy()
    assert (values > 0).all() and (values <= 1).all()
    # each column is a permutation of 1/n .. n/n (no ties in random probabilities)
    for column in ranks.columns:
        assert_allclose(np.sort(ranks[column]), np.arange(1, N_TRAIN + 1) / N_TRAIN)
    # the order of the probabilities is kept
    oof = preds["cnn"].oof[:, 0]
    assert_array_equal(np.argsort(ranks["cnn__cat"].to_numpy()), np.argsort(oof))


def test_level1_rank_ties_share_the_higher_rank(tmp_path):
    data = _dataset(tmp_path, "regression", with_test=False)
    oof = np.array([0.3, 0.1, 0.3, 0.5, 0.1, 0.9, 0.3, 0.2, 0.7, 0.4])
    level1 = build_level1({"m": BasePredictions("m", oof, None)}, data, FeaturesConfig(kind="rank"))
    ranks = level1.features["m__pred"].to_numpy()
    assert ranks[1] == ranks[4] == 0.2
    assert ranks[0] == ranks[2] == ranks[6] == 0.6
    assert ranks[5] == 1.0


def test_level1_rank_test_rows_against_training_distribution(tmp_path):
    data = _dataset(tmp_path, "regression")
    oof = np.arange(1.0, N_TRAIN + 1)  # 1 .. 10
    test = np.array([5.0, 5.5, 100.0, 1.0])
    level1 = build_level1({"m": BasePredictions("m", oof, test)}, data, FeaturesConfig(kind="rank"))
    # a test value equal to a training value gets that value's rank; one between two
    # training values the lower one's; above every training value 1
    assert_allclose(level1.test_features["m__pred"], [0.5, 0.5, 1.0, 0.1])
    # ranks of test rows do not depend on the other test rows
    alone = build_level1(
        {"m": BasePredictions("m", oof, test[:1].repeat(N_TEST))}, data, FeaturesConfig(kind="rank")
    )
    assert_allclose(alone.test_features["m__pred"], 0.5)


def test_level1_passthrough_columns_appended(tmp_path):
    data = _dataset(tmp_path, "binary")
    preds = _predictions(data)
    level1 = build_level1(preds, data, FeaturesConfig(passthrough=["age", "dose"]))
    assert list(level1.features.columns) == ["cnn__yes", "rnn__yes", "age", "dose"]
    assert_array_equal(level1.features["age"], data.train["age"])
    assert_array_equal(level1.test_features["dose"], data.test["dose"])
    assert_array_equal(level1.features["cnn__yes"], preds["cnn"].oof[:, 1])


def test_level1_passthrough_glob(tmp_path):
    data = _dataset(tmp_path, "regression")
    level1 = build_level1(_predictions(data), data, FeaturesConfig(passthrough=["d*"]))
    assert list(level1.features.columns)[-1] == "dose"


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (
            FeaturesConfig(passthrough=["site"]),
            r"passthrough/fwls columns of .*train\.csv must be numeric: \['site'\]",
        ),
        (FeaturesConfig(fwls=["site"]), r"must be numeric: \['site'\]"),
        (FeaturesConfig(passthrough=["height"]), r"no column of .*train\.csv matches 'height'"),
    ],
)
def test_level1_bad_passthrough(tmp_path, cfg, match):
    data = _dataset(tmp_path, "binary")
    with pytest.raises(DataError, match=match):
        build_level1(_predictions(data), data, cfg)


@pytest.mark.parametrize("which", ["train", "test"])
def test_level1_fwls_terms_are_products(tmp_path, which):
    data = _dataset(tmp_path, "multiclass")
    preds = _predictions(data)
    cfg = FeaturesConfig(fwls=["age", "dose"], passthrough=["age"])
    level1 = build_level1(preds, data, cfg)
    features = level1.features if which == "train" else level1.test_features
    frame = data.train if which == "train" else data.test
    base = [f"{m}__{c}" for m in ("cnn", "rnn") for c in ("cat", "dog", "emu")]
    fwls = [f"{c}__x__{f}" for c in base for f in ("age", "dose")]
    assert list(features.columns) == [*base, *fwls, "age"]
    for c in base:
        for f in ("age", "dose"):
            assert_allclose(features[f"{c}__x__{f}"], features[c] * frame[f].to_numpy())


def test_level1_fwls_uses_transformed_features(tmp_path):
    data = _dataset(tmp_path, "binary", with_test=False)
    preds = _predictions(data, names=("cnn",), with_test=False)
    level1 = build_level1(preds, data, FeaturesConfig(kind="logit", fwls=["dose"]))
    expected = _logit(preds["cnn"].oof[:, 1]) * data.train["dose"].to_numpy()
    assert_allclose(level1.features["cnn__yes__x__dose"], expected)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel", "regression"])
@pytest.mark.parametrize("kind", ["logit", "rank"])
def test_level1_blocks_unchanged_by_feature_kind(tmp_path, task, kind):
    data = _dataset(tmp_path, task)
    preds = _predictions(data)
    proba = build_level1(preds, data, FeaturesConfig())
    other = build_level1(preds, data, FeaturesConfig(kind=kind, passthrough=["age"], fwls=["dose"]))
    assert_array_equal(other.blocks, proba.blocks)
    assert_array_equal(other.test_blocks, proba.test_blocks)
    assert other.columns_per_model == proba.columns_per_model


@pytest.mark.parametrize("model_test", [True, False])
def test_level1_without_test_rows(tmp_path, model_test):
    data = _dataset(tmp_path, "binary", with_test=not model_test)
    level1 = build_level1(_predictions(data, with_test=model_test), data, FeaturesConfig())
    assert level1.test_features is None and level1.test_blocks is None
    assert level1.features.shape == (N_TRAIN, 2)


def test_level1_keeps_probabilities_near_one_apart_from_one(tmp_path):
    """float32 would round p = 1 - 1e-9 to 1 and a combiner's implied 1 - p to 0 (then
    clipped): a confidently wrong row's log loss would jump from 20.7 to 34.5."""
    data = _dataset(tmp_path, "binary")
    preds = _predictions(data)
    preds["cnn"].oof[0] = [1e-9, 1.0 - 1e-9]
    level1 = build_level1(preds, data, FeaturesConfig(kind="proba"))
    assert 1.0 - level1.blocks[0, 0] == pytest.approx(1e-9, rel=1e-6)
    assert 1.0 - level1.features["cnn__yes"].iloc[0] == pytest.approx(1e-9, rel=1e-6)
