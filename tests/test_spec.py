"""A base model is described once: :class:`~stacking.config.BaseModelSpec`, frozen, carried
from the config to every job and into ``stack.json``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from stacking.config import BaseModelSpec

PACKAGE = Path(__file__).resolve().parents[1] / "stacking"
# Settings only a base model has: a class declaring one describes a base model again
# (`outputs_are` is also what a prediction turned out to be, engine.BasePredictions).
SETTINGS = {"custom_objects", "trained_on", "test_with", "layer", "head"}


def _declared_fields(path: Path) -> dict[str, set[str]]:
    """Each class of ``path`` and the names it declares as annotated class attributes."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            found[node.name] = {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    return found


def test_only_the_spec_declares_a_base_models_settings():
    assert set(BaseModelSpec.model_fields) >= SETTINGS
    again = {
        f"{path.relative_to(PACKAGE)}:{name}": sorted(fields & SETTINGS)
        for path in PACKAGE.rglob("*.py")
        for name, fields in _declared_fields(path).items()
        if fields & SETTINGS and name != "BaseModelSpec"
    }
    assert again == {}, f"base-model settings declared outside BaseModelSpec: {again}"


def test_spec_is_frozen_and_names_its_inputs():
    spec = BaseModelSpec(path=Path("/models/cnn"), input={"pixels": "img", "meta": "tab"})
    with pytest.raises(ValidationError, match="frozen"):
        spec.layer = "embed"
    assert spec.input_names == ["pixels", "meta"]
    assert BaseModelSpec(path=Path("/m.keras"), input="x").input_names is None
