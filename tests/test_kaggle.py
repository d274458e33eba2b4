"""The Kaggle worked example's flow (make kaggle-demo) at reduced size: tables, exported
plan, LightGBM as prediction files and as an ONNX fold set, two Keras fold sets, the stack,
and the held-out scores."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import sqlite_store

from stacking.cli import main

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("lightgbm", reason="the dev extra installs lightgbm")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"experiments/kaggle/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.e2e
def test_kaggle_example_stacks_lightgbm_files_onnx_and_keras(tmp_path, capsys):
    # The real config in the repository's layout rebuilt under tmp_path, on 3 folds.
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    raw = yaml.safe_load((ROOT / "configs/kaggle.yaml").read_text())
    raw["folds"]["n_splits"] = 3
    raw["tracking"]["uri"] = sqlite_store(tmp_path)
    raw["cache"] = {"dir": str(tmp_path / "cache")}
    raw["meta"]["bootstrap"] = 100
    config = tmp_path / "configs/kaggle.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    here = tmp_path / "experiments/kaggle"

    paths = _script("make_data").write_data(here / "data")
    assert "diagnosis" not in pd.read_csv(paths["test"]).columns
    folds = here / "data/folds.csv"
    assert main(["folds", str(config), "--output", str(folds)]) == 0
    files = _script("lgbm_oof").train_oof(here / "data", folds, here / "preds", n_estimators=30)
    models = _script("train_base_models").train_all(config, epochs_scale=0.1, trees_scale=0.1)
    assert sorted(p.name for p in models["lgbm_onnx"].glob("fold_*")) == [
        "fold_0.onnx",
        "fold_1.onnx",
        "fold_2.onnx",
    ]
    capsys.readouterr()

    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet", "--output", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert {"lgbm_files", "lgbm_onnx", "mlp", "logreg", "logistic", "mean"} <= set(board.model)
    # The notebook's OOF file entered the stack value for value, matched by id.
    oof = pd.read_parquet(out / "oof.parquet")
    written = pd.read_csv(files["oof"], dtype={"id": str}).set_index("id")
    np.testing.assert_array_equal(
        oof["lgbm_files__M"].to_numpy(), written.loc[oof["id"].astype(str), "M"].to_numpy()
    )
    # Served from the results folder: the test rows plus the notebook's test prediction
    # in the member's level-1 column give the run's own test predictions.
    rows = pd.read_csv(paths["test"], dtype={"id": str}).merge(
        pd.read_csv(files["test"], dtype={"id": str})[["id", "M"]], on="id"
    )
    rows.rename(columns={"M": "lgbm_files__M"}).to_csv(tmp_path / "rows.csv", index=False)
    served = tmp_path / "served.csv"
    assert main(["predict", str(out), str(tmp_path / "rows.csv"), "--output", str(served)]) == 0
    served_m = pd.read_csv(served, dtype={"id": str}).set_index("id")["ensemble__M"]
    run = pd.read_parquet(out / "test_predictions.parquet").astype({"id": str}).set_index("id")
    np.testing.assert_allclose(served_m.loc[run.index], run["ensemble__M"], atol=1e-12)
    scores = _script("score_holdout").holdout_scores(out, paths["solution"])
    assert len(scores) == 5 and scores["model"].str.startswith("ensemble (").sum() == 1
    # Better than a constant guess of the training share on 114 held-out rows.
    assert (scores["holdout_log_loss"] < 0.66).all(), scores
