"""stack.json: a stack folder saved by an earlier tf-stacking still loads and serves.

``tests/data/stack_format3/`` is a stack folder in format 3, written (models copied in) by
the tf-stacking of that format from a tiny binary experiment with one member of each
kind: fold models read by input name (``folded``), an external model whose logits were
resolved in training (``outside``), a backbone with its fitted head (``backbone``) and
prediction files (``given``). ``stack_format3_expected.csv`` is what that tf-stacking
predicted for ``stack_format3_rows.csv``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from stacking.predictor import load_predictor
from stacking.stack import load_stack

DATA = Path(__file__).parent / "data"


def test_stack_saved_in_format_3_predicts_as_it_did(tmp_path):
    folder = shutil.copytree(DATA / "stack_format3", tmp_path / "stack")
    rows = pd.read_csv(DATA / "stack_format3_rows.csv")
    expected = pd.read_csv(DATA / "stack_format3_expected.csv")

    got = load_predictor(folder).predict(rows)

    assert list(got.columns) == list(expected.columns)
    ensemble = [c for c in expected.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(got[ensemble], expected[ensemble], rtol=0, atol=1e-12)
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    kinds = {m.name: m.kind for m in load_stack(folder).base_models}
    assert kinds == {
        "backbone": "backbone",
        "folded": "folds",
        "given": "predictions",
        "outside": "external",
    }
