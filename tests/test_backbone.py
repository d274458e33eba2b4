"""The third honest way: a frozen backbone's embeddings with a cross-fitted head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from stacking import BaseModelError, ConfigError, Experiment
from stacking.base import load_base_model
from stacking.meta import make_candidate
from stacking.predictor import load_predictor


@pytest.fixture(scope="module")
def backbone_path(tmp_path_factory):
    import keras

    inputs = keras.Input((6,))
    embedding = keras.layers.Dense(5, activation="tanh", name="embedding")(inputs)
    outputs = keras.layers.Dense(4, activation="softmax", name="pretext")(embedding)
    path = tmp_path_factory.mktemp("backbone") / "encoder.keras"
    keras.Model(inputs, outputs).save(path)  # untrained: a fixed random encoder
    return path


def _config(project, tmp_path, backbone_path, **spec):
    return project.config(
        tmp_path,
        **{
            "base_models.bb": {"path": str(backbone_path), "input": "x", **spec},
            "tracking.enabled": False,
            "meta.bootstrap": 0,
        },
    )


def test_backbone_head_is_cross_fitted_on_the_fold_plan(
    multiclass_project, tmp_path, backbone_path
):
    import keras

    cfg = _config(multiclass_project, tmp_path, backbone_path, layer="embedding", head="logistic")
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()

    # Recompute by hand: embeddings of the named layer, a head per fold.
    model = keras.models.load_model(backbone_path)
    encoder = keras.Model(model.inputs, model.get_layer("embedding").output)
    train = pd.read_csv(multiclass_project.root / "train.csv")
    x = train[[f"f_{i}" for i in range(6)]].to_numpy("float32")
    emb = load_base_model(backbone_path, layer="embedding").predict([x], batch_size=4096)
    emb = emb.astype(np.float64)  # the engine fits heads in float64
    # The compiled embedding equals a direct call; the heads are then fitted on exactly
    # the embedding the engine computed (lbfgs would amplify float32 rounding otherwise).
    np.testing.assert_allclose(emb, encoder(x).numpy(), atol=1e-5)
    y = pd.Categorical(train["y"], categories=["ant", "bee", "cat"]).codes
    folds = result.oof["fold"].to_numpy()
    head = make_candidate("logistic", task="multiclass").estimator
    expected = np.zeros((len(y), 3))
    for k in range(3):
        fitted = clone(head).fit(emb[folds != k], y[folds != k])
        expected[folds == k] = fitted.predict_proba(emb[folds == k])
    got = result.oof[["bb__ant", "bb__bee", "bb__cat"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert "bb" in set(result.leaderboard.model)

    # The saved ensemble replays the backbone and its fold heads on raw rows.
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    served = load_predictor(tmp_path / "out").predict(test)
    ens = [c for c in served.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(served[ens], result.test_predictions[ens], atol=1e-10)


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ({"layer": "embedding"}, ConfigError, "`layer:` makes the model a backbone"),
        ({"layer": "nope", "head": "logistic"}, BaseModelError, "has no layer 'nope'"),
        ({"head": "mean"}, ConfigError, "a head needs a learned estimator"),
    ],
)
def test_backbone_errors(multiclass_project, tmp_path, backbone_path, spec, error, match):
    with pytest.raises(error, match=match):
        cfg = _config(multiclass_project, tmp_path, backbone_path, **spec)
        Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()


def test_backbone_beside_fold_models_is_refused(multiclass_project, tmp_path):
    """A fold model of another plan trained on these rows: not a clean backbone."""
    from stacking import LeakageError

    cfg = multiclass_project.config(
        tmp_path,
        **{
            "base_models.bb": {
                "path": str(multiclass_project.root / "models/wide/fold_0.keras"),
                "input": "x",
                "head": "logistic",
            },
            "tracking.enabled": False,
        },
    )
    with pytest.raises(LeakageError, match="sits beside fold models"):
        Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()


def test_backbone_rejects_options_it_would_ignore(multiclass_project, tmp_path, backbone_path):
    from stacking import load_config

    cfg = _config(multiclass_project, tmp_path, backbone_path, head="logistic", test_with="full")
    with pytest.raises(ConfigError, match=r"\['test_with'\] do not apply to a backbone"):
        load_config(cfg)
