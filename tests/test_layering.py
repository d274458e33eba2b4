"""Imports point down the data flow of docs/architecture.md; heavy libraries stay put."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stacking"
# Stage order: a module may import only stages at its own position or before it.
ORDER = [
    "errors",
    "quiet",
    "numeric",
    "config",
    "metrics",
    "data",
    "images",
    "starter",
    "views",
    "folds",
    "base",
    "cache",
    "executors",
    "training",
    "level1",
    "meta",
    "backbone",
    "engine",
    "evaluate",
    "stack",
    "predictor",
    "results",
    "plots",
    "tracking",
    "cost",
    "guard",
    "experiment",
    "seeds",  # runs one config per seed: builds experiments
    "compare",  # reads finished runs back from the tracker
    "cli",
    "_docgen",  # writes docs/configuration.md from config's models; nothing imports it
]


def _stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layering_imports_point_down_the_data_flow(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own == "__init__":
        return
    for name in _imports(path):
        if name.startswith("stacking."):
            target = name.split(".")[1]
            assert ORDER.index(target) <= ORDER.index(own), f"{own} imports {name}"
        top = name.split(".")[0]
        if top == "mlflow":
            assert own == "tracking", f"only tracking may import mlflow; {path.name} does"
        if top in ("tensorflow", "keras"):
            # views decodes images with keras.utils inside its tf.data pipeline, lazily.
            assert own in ("base", "meta", "training", "views"), f"{path.name} imports {top}"
        if top == "matplotlib":
            assert own == "plots", f"only plots may import matplotlib; {path.name} does"


def test_layering_importing_the_package_loads_neither_tensorflow_nor_mlflow():
    code = (
        "import sys, stacking, stacking.config, stacking.data, stacking.folds, stacking.engine,"
        " stacking.level1, stacking.meta, stacking.evaluate, stacking.experiment;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
