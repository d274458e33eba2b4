"""The README's demo flow at reduced size: train the four digits models, then stack."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import sqlite_store

from stacking.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_trains_base_models_and_stacks_them(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "train_base_models", ROOT / "experiments/digits/train_base_models.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)

    # The real config, with its folder layout rebuilt under tmp_path and 2 folds.
    (tmp_path / "configs").mkdir()
    shutil.copytree(ROOT / "configs", tmp_path / "configs", dirs_exist_ok=True)
    raw = yaml.safe_load((ROOT / "configs/digits.yaml").read_text())
    raw["folds"]["n_splits"] = 2
    raw["tracking"]["uri"] = sqlite_store(tmp_path)
    raw["cache"] = {"dir": str(tmp_path / "cache")}
    raw["meta"]["bootstrap"] = 100
    config = tmp_path / "configs/digits.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))

    dirs = demo.train_all(config, epochs_scale=0.04)
    assert set(dirs) == {"mlp", "cnn", "linear", "gru"}
    for directory in dirs.values():
        assert sorted(p.name for p in directory.glob("fold_*.keras")) == [
            "fold_0.keras",
            "fold_1.keras",
        ]
    # A second call finds the models and trains nothing.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("fold_*.keras")}
    demo.train_all(config, epochs_scale=0.04)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    out = tmp_path / "out"
    assert main(["run", str(config), "--quiet", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    board = pd.read_csv(out / "leaderboard.csv")
    assert {
        "mlp",
        "cnn",
        "linear",
        "gru",
        "logistic",
        "mean",
        "nnls",
        "selection",
        "convex",
        "mlp_meta",
    } <= set(board.model)
    assert board.loc[board.selected, "role"].tolist() == ["meta"]
    assert "mlflow run:" in printed
    test = pd.read_parquet(out / "test_predictions.parquet")
    assert len(test) == 360 and set(test["prediction"]) <= set(range(10))
