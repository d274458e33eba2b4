"""Commands that need no model start fast: they import neither TensorFlow nor Keras, and
``--help`` not even MLflow. Each case runs in a fresh interpreter, as a user's shell does;
``predict`` and ``reproduce`` say what they are doing before their first slow step."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sqlite_store

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "mlflow")


def _modules_after(argv: list[str], cwd: Path) -> tuple[dict[str, bool], str]:
    """Which heavy modules ``stacking.cli.main(argv)`` left loaded, and its stdout."""
    code = (
        "import json, sys\n"
        "from stacking.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"print(json.dumps({{'code': code, **{{m: m in sys.modules for m in {HEAVY!r}}}}}))\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    *out, last = done.stdout.strip().splitlines()
    loaded = json.loads(last)
    assert loaded.pop("code") == 0, done.stdout + done.stderr
    return loaded, "\n".join(out)


def test_fast_commands_help_imports_no_tensorflow_nor_mlflow(tmp_path):
    loaded, out = _modules_after(["--help"], tmp_path)
    assert "usage: stacking" in out
    assert loaded == {"tensorflow": False, "keras": False, "mlflow": False}


def test_fast_commands_runs_imports_mlflow_but_no_tensorflow(tmp_path):
    uri = sqlite_store(tmp_path)
    loaded, out = _modules_after(["runs", "--tracking-uri", uri, "--experiment", "x"], tmp_path)
    assert out.startswith("no runs in experiment 'x'"), out
    assert loaded == {"tensorflow": False, "keras": False, "mlflow": True}


def test_fast_commands_cache_info_imports_no_tensorflow_nor_mlflow(tmp_path):
    loaded, out = _modules_after(["cache", "info", "--dir", str(tmp_path / "cache")], tmp_path)
    assert json.loads(out)["entries"] == 0
    assert loaded == {"tensorflow": False, "keras": False, "mlflow": False}


def test_fast_commands_inspect_manifest_checks_hashes_without_tensorflow(
    multiclass_project, tmp_path
):
    folds = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models" / "wide", folds)
    loaded, out = _modules_after(["inspect", str(folds / "stacking.json")], tmp_path)
    info = json.loads(out)
    assert loaded == {"tensorflow": False, "keras": False, "mlflow": False}
    assert info["models"] == ["fold_0.keras", "fold_1.keras", "fold_2.keras"]
    assert info["manifest"]["n_splits"] == 3 and info["hashes"] == "match"

    shutil.copy(folds / "fold_0.keras", folds / "fold_1.keras")  # swapped after training
    _, out = _modules_after(["inspect", str(folds / "stacking.json")], tmp_path)
    info = json.loads(out)
    assert info["files"] == {"fold_0.keras": "ok", "fold_1.keras": "differs", "fold_2.keras": "ok"}
    assert info["hashes"].startswith("DIFFER: ['fold_1.keras']")


@pytest.mark.parametrize(
    ("argv", "first"),
    [
        (["predict", "{tmp}", "{tmp}/rows.csv", "--output", "{tmp}/p.csv"], "loading the ensemble"),
        (["reproduce", "0" * 32, "--tracking-uri", "{uri}"], "reproducing run 0000"),
    ],
    ids=["predict", "reproduce"],
)
def test_fast_commands_say_what_they_do_before_the_slow_part(tmp_path, capsys, argv, first):
    """The progress line comes first, on stdout; a failure after it is still one stderr
    line (here: a folder without an ensemble, a run that is not in the store)."""
    from stacking.cli import main

    (tmp_path / "rows.csv").write_text("id,f_0\na,1\n")
    uri = sqlite_store(tmp_path)
    assert main([a.format(tmp=tmp_path, uri=uri) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith(first), captured.out
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith("error: ")
