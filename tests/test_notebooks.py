"""The notebooks run, top to bottom, against a tiny project, so that they cannot rot."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from conftest import sqlite_store
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(name: str, project, tmp_path, monkeypatch) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel with the project's config and a throwaway
    MLflow store; the kernel imports this checkout's ``stacking`` (PYTHONPATH)."""
    cfg = project.config(tmp_path, **{"meta.bootstrap": 0, "plots": True})
    monkeypatch.setenv("STACKING_CONFIG", str(cfg))
    monkeypatch.setenv("STACKING_TRACKING_URI", sqlite_store(tmp_path))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    for key in list(os.environ):  # the kernel starts as a user's does: no muting of ours
        if key.startswith(("TF_", "GLOG_", "ABSL_", "MLFLOW_ENABLE_ARTIFACTS")):
            monkeypatch.delenv(key)
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert_quiet(nb)
    return nb


# What must not reach a notebook's outputs: progress-bar frames (tqdm's `NN%|` and its
# carriage returns, MLflow's artifact bars, the IProgress warning) and TensorFlow's
# start-up lines (absl's `I0000 00:00:…` prefix, oneDNN, CUDA).
_NOISE = re.compile(
    r"\r|\d+%\||Downloading artifacts|Uploading artifacts|TqdmWarning|IProgress|"
    r"^[IWEF]\d{4} \d\d:\d\d|oneDNN|cuda|absl::InitializeLog|TF_ENABLE_ONEDNN_OPTS",
    re.MULTILINE,
)


def assert_quiet(nb) -> None:
    """The executed outputs hold no progress frames and no TensorFlow lines."""
    texts = [
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    ]
    noise = [m.group(0) for text in texts for m in _NOISE.finditer(text)]
    assert not noise, (noise[:5], texts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_work_from_the_repository_root_like_make_demo(path, tmp_path, monkeypatch):
    """Opened in notebooks/, a notebook moves to the repository's root first: `make demo`'s
    cache, MLflow store (MLflow's default, sqlite:///mlflow.db) and runs/ are shared, not
    recomputed into notebooks/."""
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("STACKING_CONFIG", raising=False)
    monkeypatch.delenv("STACKING_TRACKING_URI", raising=False)
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    namespace: dict = {}
    exec(first.source, namespace)
    assert Path.cwd() == tmp_path
    assert namespace["CONFIG"] == "configs/digits.yaml"  # the file `make demo` runs
    assert namespace["TRACKING_URI"] == "sqlite:///mlflow.db"


def outputs(nb, mime: str) -> list[str]:
    return [
        o["data"][mime]
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type in ("display_data", "execute_result") and mime in o.get("data", {})
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.e2e
def test_notebooks_quickstart_runs_and_shows_leaderboard_plots_predictions(
    multiclass_project, tmp_path, monkeypatch
):
    nb = execute("01_quickstart.ipynb", multiclass_project, tmp_path, monkeypatch)
    tables = outputs(nb, "text/html")
    assert any("delta_vs_best_base" in t for t in tables)  # the leaderboard
    assert any("ensemble__ant" in t and "prediction" in t for t in tables)  # predictions
    # leaderboard, correlation, weights (when any), confusion, calibration
    assert len(outputs(nb, "image/png")) >= 4
    assert len(list(tmp_path.glob("runs/*/plots/*.png"))) >= 4


@pytest.mark.e2e
def test_notebooks_compare_runs_tables_and_plots_three_runs(
    multiclass_project, tmp_path, monkeypatch
):
    nb = execute("02_compare_runs.ipynb", multiclass_project, tmp_path, monkeypatch)
    (table,) = [t for t in outputs(nb, "text/html") if "tags.stacking.ensemble" in t]
    for variant in ("logistic on probabilities", "logistic on logits", "mean of the base"):
        assert variant in table
    assert table.count("metrics.cv_log_loss") == 1
    assert len(outputs(nb, "image/png")) == 1
