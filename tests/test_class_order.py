"""``data.classes``: the class order a user declares is the order used everywhere.

Without it classes are sorted, so an ordinal target (low < mid < high) or models trained
elsewhere with another output order had no way in: the manifest check refused them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stacking.base import resolve_base_model
from stacking.config import BaseModelSpec, DataConfig, parse_config
from stacking.data import load_dataset
from stacking.errors import BaseModelError, DataError


def _table(path: Path, labels: list) -> Path:
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "label": labels})
    frame["x"] = np.arange(len(labels), dtype=float)
    frame.to_csv(path, index=False)
    return path


def _data(tmp_path: Path, labels: list, **keys) -> DataConfig:
    return DataConfig(train=_table(tmp_path / "train.csv", labels), id="id", target="label", **keys)


LABELS = ["mid", "low", "high", "low", "mid", "high"]


def test_class_order_default_is_sorted(tmp_path):
    data = load_dataset(_data(tmp_path, LABELS))
    assert data.classes == ["high", "low", "mid"]
    assert data.y.tolist() == [2, 1, 0, 1, 2, 0]


def test_class_order_declared_order_encodes_the_target(tmp_path):
    data = load_dataset(_data(tmp_path, LABELS, classes=["low", "mid", "high"]))
    assert data.classes == ["low", "mid", "high"]
    assert data.y.tolist() == [1, 0, 2, 0, 1, 2]
    assert data.output_names() == ["low", "mid", "high"]


def test_class_order_holdout_target_follows_the_declared_order(tmp_path):
    cfg = _data(tmp_path, LABELS, classes=["low", "mid", "high"])
    cfg.test = _table(tmp_path / "test.csv", ["high", "low"])
    data = load_dataset(cfg)
    assert data.test_y.tolist() == [2, 0]


def test_class_order_binary_second_class_is_positive(tmp_path):
    labels = ["yes", "no", "no", "yes"]
    assert load_dataset(_data(tmp_path, labels)).y.tolist() == [1, 0, 0, 1]
    flipped = load_dataset(_data(tmp_path, labels, classes=["yes", "no"]))
    assert flipped.task == "binary"
    assert flipped.y.tolist() == [0, 1, 1, 0]


def test_class_order_matches_declared_text_to_the_target_values(tmp_path):
    # YAML strings order an integer target: the values kept are the target's own ints.
    data = load_dataset(_data(tmp_path, [3, 1, 2, 1], classes=["3", "1", "2"]))
    assert data.classes == [3, 1, 2]
    assert all(isinstance(c, int) for c in data.classes)
    assert data.y.tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        (["low", "mid"], r"misses \['high'\]"),
        (["low", "mid", "high", "top"], r"does not have: \['top'\]"),
        (["low", "mid", "high", "low"], r"repeats \['low'\]"),
    ],
)
def test_class_order_must_name_every_class_once(tmp_path, classes, message):
    with pytest.raises(DataError, match=message) as info:
        load_dataset(_data(tmp_path, LABELS, classes=classes))
    assert "data.classes" in str(info.value) and "train.csv" in str(info.value)


def test_class_order_is_refused_for_regression(tmp_path):
    cfg = _data(tmp_path, [0.5, 1.5, 2.25, 3.0], classes=[1, 2], task="regression")
    with pytest.raises(DataError, match=r"regression target\. Remove data\.classes"):
        load_dataset(cfg)


def test_class_order_parses_from_yaml_values(tmp_path):
    raw = {
        "data": {"train": "t.csv", "target": "y", "classes": [2, "b", 1.5]},
        "base_models": {"m": {"path": "m", "input": {"columns": ["x"]}}},
    }
    assert parse_config(raw, root=tmp_path).data.classes == [2, "b", 1.5]


def _fold_dir(tmp_path: Path, classes: list[str]) -> Path:
    """A fold-model folder's manifest only: the class check comes before any model file."""
    folder = tmp_path / "models"
    folder.mkdir()
    manifest = {"n_splits": 2, "folds_digest": "abc", "format": "keras", "task": "multiclass"}
    (folder / "stacking.json").write_text(json.dumps({**manifest, "classes": classes}))
    return folder


def test_class_order_manifest_in_another_order_is_refused_with_the_way_to_declare_it(tmp_path):
    folder = _fold_dir(tmp_path, ["low", "mid", "high"])
    cfg = BaseModelSpec(path=folder, input={"columns": ["x"]})
    check = dict(folds_digest="abc", n_splits=2, task="multiclass")
    with pytest.raises(BaseModelError, match=r"data.classes: \['low', 'mid', 'high'\]"):
        resolve_base_model("m", cfg, classes=["high", "low", "mid"], **check)
    # Declared, the order is the models': the class check passes and the next one runs.
    with pytest.raises(BaseModelError, match="has no fold_0 model"):
        resolve_base_model("m", cfg, classes=["low", "mid", "high"], **check)
