"""Candidates, multi-level stacking, sample weights and the weights table, end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import nnls

from stacking import ConfigError, Experiment
from stacking.meta import make_candidate


def _run(project, tmp_path, **changes):
    changes.setdefault("tracking.enabled", False)
    cfg = project.config(tmp_path, **changes)
    return Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()


def test_candidates_one_per_family_are_ranked_and_best_is_selected(multiclass_project, tmp_path):
    candidates = [
        "logistic",
        "mean",
        "nnls",
        {"estimator": "selection", "params": {"n_iter": 10}},
        {"estimator": "convex", "params": {"epochs": 30}},
    ]
    result = _run(multiclass_project, tmp_path, **{"meta.candidates": candidates})
    board = result.leaderboard
    meta = board[board.role == "meta"]
    assert set(meta.model) == {"logistic", "mean", "nnls", "selection", "convex"}
    best = meta.sort_values("cv_log_loss").iloc[0]["model"]
    assert result.ensemble == best
    assert board.loc[board.selected, "model"].tolist() == [best]
    # Every non-base row carries a bootstrap interval around its delta.
    assert (meta.ci_low <= meta.delta_vs_best_base).all()
    assert (meta.delta_vs_best_base <= meta.ci_high).all()


def test_weights_table_nnls_equals_scipy_on_the_level1_blocks(multiclass_project, tmp_path):
    result = _run(multiclass_project, tmp_path, **{"meta.candidates": ["nnls"]})
    oof = pd.read_parquet(tmp_path / "out" / "oof.parquet")
    # Recompute NNLS on the probability blocks: features=proba is the default kind.
    y = pd.Categorical(oof["y"], categories=["ant", "bee", "cat"]).codes
    onehot = np.eye(3)[y]
    A = np.column_stack(
        [
            oof[[f"{m}__{c}" for c in ["ant", "bee", "cat"]]].to_numpy().ravel()
            for m in ["wide", "logit", "outside"]
        ]
    )
    coef, _ = nnls(A, onehot.ravel())
    weights = result.weights.set_index("base_model")["weight"]
    np.testing.assert_allclose(
        weights.loc[["wide", "logit", "outside"]].to_numpy(), coef / coef.sum(), atol=1e-8
    )
    saved = pd.read_csv(tmp_path / "out" / "weights.csv")
    assert set(saved.columns) == {"candidate", "base_model", "feature", "output", "weight"}


def test_multilevel_stack_feeds_level2_oof_to_level3(multiclass_project, tmp_path):
    result = _run(
        multiclass_project,
        tmp_path,
        **{"meta.candidates": ["logistic", "mean"], "meta.levels": [{"candidates": ["nnls"]}]},
    )
    board = result.leaderboard.set_index("model")
    assert board.loc["nnls", "level"] == 3
    assert board.loc["logistic", "level"] == 2
    assert result.ensemble == "nnls"  # the last level's best is the ensemble
    weights = result.weights[result.weights.candidate == "nnls"]
    assert set(weights.base_model) == {"logistic", "mean"}
    meta_oof = pd.read_parquet(tmp_path / "out" / "meta_oof.parquet")
    assert {"logistic__ant", "mean__cat", "nnls__bee"} <= set(meta_oof.columns)


def test_sample_weights_change_meta_fit_and_metrics(binary_project, tmp_path):
    plain = _run(binary_project, tmp_path / "a")
    weighted = _run(binary_project, tmp_path / "b", **{"data.weight": "w"})
    a = plain.leaderboard.set_index("model")
    b = weighted.leaderboard.set_index("model")
    # Base models are not refitted, but their weighted scores differ.
    assert a.loc["wide", "cv_log_loss"] != pytest.approx(b.loc["wide", "cv_log_loss"])
    oof = pd.read_parquet(tmp_path / "b" / "out" / "oof.parquet")
    w = pd.read_csv(binary_project.root / "train.csv")["w"].to_numpy()
    y = (oof["y"] == "yes").to_numpy()
    p = np.clip(oof["wide__yes"].to_numpy(), 1e-15, 1 - 1e-15)
    expected = np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w)
    assert b.loc["wide", "cv_log_loss"] == pytest.approx(expected)


def test_features_passthrough_and_fwls_reach_oof(binary_project, tmp_path):
    result = _run(
        binary_project,
        tmp_path,
        **{"meta.features": {"kind": "logit", "passthrough": ["f_0"], "fwls": ["f_1"]}},
    )
    cols = list(result.oof.columns)
    assert "wide__yes__x__f_1" in cols and "f_0" in cols
    np.testing.assert_allclose(
        result.oof["wide__yes__x__f_1"],
        result.oof["wide__yes"] * pd.read_csv(binary_project.root / "train.csv")["f_1"],
    )


def test_meta_features_refuse_nan_in_views(binary_project, tmp_path):
    frame = pd.read_csv(binary_project.root / "train.csv")
    frame.loc[3, "f_2"] = np.nan
    frame.to_csv(tmp_path / "train.csv", index=False)
    from stacking import DataError

    with pytest.raises(DataError, match=r"missing or infinite values in \['f_2'\]"):
        _run(binary_project, tmp_path, **{"data.train": str(tmp_path / "train.csv")})


@pytest.mark.parametrize(
    ("spec", "task", "match"),
    [
        ("ridge", "binary", "'ridge' does not apply to a binary task"),
        ("vote", "regression", "'vote' does not apply"),
        ("sklearn.linear_model.Nope", "binary", "cannot import"),
        ("sklearn.linear_model.Ridge", "binary", "is not a classifier"),
        ({"estimator": "logistic", "params": {"nonsense": 1}}, "binary", "unexpected keyword"),
    ],
)
def test_make_candidate_errors(spec, task, match):
    from stacking.config import CandidateConfig

    spec = CandidateConfig(**spec) if isinstance(spec, dict) else spec
    with pytest.raises(ConfigError, match=match):
        make_candidate(spec, task=task)


def test_test_with_full_predicts_test_rows_with_the_full_model(multiclass_project, tmp_path):
    import shutil

    import keras

    models = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models/wide", models)
    # Any model trained on all rows would do; fold 2's stands in for it here. A file
    # added after training must be recorded in the manifest (its hash is checked).
    shutil.copy(models / "fold_2.keras", models / "full.keras")
    from stacking.base import write_manifest
    from stacking.folds import FoldPlan

    write_manifest(
        models,
        fold_plan=FoldPlan.from_csv(models / "folds.csv"),
        task="multiclass",
        classes=["ant", "bee", "cat"],
        has_full=True,
    )
    result = _run(
        multiclass_project,
        tmp_path,
        **{"base_models.wide.path": str(models), "base_models.wide.test_with": "full"},
    )
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    full = keras.models.load_model(models / "full.keras")
    expected = full(test[[f"f_{i}" for i in range(6)]].to_numpy("float32")).numpy()
    got = result.test_predictions[["wide__ant", "wide__bee", "wide__cat"]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_binary_without_test_set_keeps_both_columns_and_logs_a_model(binary_project, tmp_path):
    result = _run(
        binary_project,
        tmp_path,
        **{
            "data.test": None,
            "meta.features": {"drop_redundant": False},
            "tracking.enabled": True,
        },
    )
    assert result.test_predictions is None
    assert not (tmp_path / "out" / "test_predictions.parquet").exists()
    assert {"wide__no", "wide__yes"} <= set(result.oof.columns)
    # The served model's signature came from training rows (no test set to borrow from).
    import mlflow

    from stacking import load_config

    uri = load_config(tmp_path / "binary.yaml").tracking.uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    model_id = client.get_run(result.run_id).data.tags["stacking.ensemble_model_id"]
    assert client.get_logged_model(model_id).name == "ensemble"
