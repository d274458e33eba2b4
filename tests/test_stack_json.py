"""stack.json: each base model's spec as the model serialises it; a stack folder saved by
an earlier tf-stacking still loads and serves.

``tests/data/stack_format3/`` is a stack folder in format 3, written (models copied in) by
the tf-stacking of that format from a tiny binary experiment with one member of each
kind: fold models read by input name (``folded``), an external model whose logits were
resolved in training (``outside``), a backbone with its fitted head (``backbone``) and
prediction files (``given``). ``stack_format3_expected.csv`` is what that tf-stacking
predicted for ``stack_format3_rows.csv``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stacking.config import BaseModelSpec, CandidateConfig
from stacking.errors import DataError
from stacking.predictor import load_predictor
from stacking.stack import FORMAT_VERSION, load_stack

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


def _format3(tmp_path):
    folder = shutil.copytree(DATA / "stack_format3", tmp_path / "stack")
    rows = pd.read_csv(DATA / "stack_format3_rows.csv")
    return load_stack(folder), rows, pd.read_csv(DATA / "stack_format3_expected.csv")


def _served(stack, rows) -> np.ndarray:
    return stack.predict_proba(rows)


# The settings each member of the fixture was configured with (as a config would give them).
SPECS = {
    "backbone": BaseModelSpec(
        path=Path("/models/backbone.keras"),
        input="x",
        layer="embed",
        head=CandidateConfig(estimator="logistic", params={"C": 0.5}),
    ),
    "folded": BaseModelSpec(path=Path("/models/folded"), input={"feats": "x"}),
    "given": BaseModelSpec(predictions={"oof": "/p/oof.csv", "test": "/p/test.csv"}),
    "outside": BaseModelSpec(
        path=Path("/models/outside.keras"), input="x", trained_on="external", outputs_are="auto"
    ),
}


def test_stack_json_holds_each_spec_as_the_model_dumps_it(tmp_path):
    old, rows, _ = _format3(tmp_path)
    members = [m.model_copy(update={"spec": SPECS[m.name]}) for m in old.base_models]
    stack = replace(old, base_models=members)

    saved = stack.save(tmp_path / "saved", copy_models=True)
    written = json.loads((saved / "stack.json").read_text())
    loaded = load_stack(saved)

    assert written["format_version"] == FORMAT_VERSION
    for entry in written["base_models"]:
        assert entry["spec"] == SPECS[entry["name"]].model_dump(mode="json")
    assert {m.name: m.spec for m in loaded.base_models} == SPECS
    assert [m.fitted_outputs_are for m in loaded.base_models] == [
        m.fitted_outputs_are for m in old.base_models
    ]
    np.testing.assert_allclose(_served(loaded, rows), _served(old, rows), rtol=0, atol=1e-12)


def test_stack_from_format_3_saved_again_loads_and_predicts_the_same(tmp_path):
    """A format-3 member's spec lacks keys a config needs (its path, a backbone's head):
    saving it in the current format must still give a folder that loads."""
    old, rows, expected = _format3(tmp_path)
    again = load_stack(old.save(tmp_path / "again", copy_models=True))
    assert json.loads((tmp_path / "again" / "stack.json").read_text())["format_version"] == 4
    assert [m.kind for m in again.base_models] == [m.kind for m in old.base_models]
    ensemble = [c for c in expected.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(_served(again, rows), expected[ensemble], rtol=0, atol=1e-12)


@pytest.mark.parametrize("version", [2, 5, None])
def test_stack_json_of_another_format_is_refused_naming_both(tmp_path, version):
    folder = shutil.copytree(DATA / "stack_format3", tmp_path / "stack")
    written = json.loads((folder / "stack.json").read_text())
    written["format_version"] = version
    (folder / "stack.json").write_text(json.dumps(written))
    with pytest.raises(DataError, match=rf"saved in format {version}; .* reads formats 3 and 4"):
        load_stack(folder)
