"""The `stacking` command: exit codes, one-line errors, and what it prints."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from stacking.cli import main


def test_cli_run_prints_leaderboard_and_run_id(multiclass_project, tmp_path, capsys):
    cfg = multiclass_project.config(tmp_path)
    code = main(
        [
            "run",
            str(cfg),
            "--output",
            str(tmp_path / "out"),
            "--quiet",
            "--set",
            "meta.bootstrap=50",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "leaderboard (out-of-fold; log_loss: lower is better)" in out
    for model in ["wide", "logit", "outside", "base_mean", "logistic"]:
        assert f" {model} " in out
    run_id = out.split("mlflow run: ")[1].split()[0]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["run_id"] == run_id
    assert "mlflow ui --backend-store-uri sqlite:///" in out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["run", "{tmp}/nope.yaml"], "error: config file '.*nope.yaml' does not exist"),
        (["run", "{cfg}", "--set", "folds.n_split=3"], "error: .*unknown key 'folds.n_split'"),
        (["run", "{cfg}", "--set", "folds.n_splits=two"], r"'folds.n_splits'.*Received: 'two'"),
        (["run", "{cfg}", "--set", "folds.seed=5"], "error: base model 'wide' was trained on fold"),
        (["run", "{cfg}", "--set", "metrics=[rmse]"], "error: .*'rmse' does not apply"),
        (["run", "{cfg}", "--set", "meta.candidates=[nosuch]"], "error: .*'nosuch' is neither"),
        (["run", "{cfg}", "--set", "base_models.wide.input=nope"], "error: .*no view 'nope'"),
        (["run", "{cfg}", "--set", "folds"], "error: --set expects dotted.key=value"),
        (["inspect", "{tmp}/nope.keras"], "error: model path .* does not exist"),
        (
            ["run", "{cfg}", "--set", "meta.candidates=[{estimator: logistic, params: {C: -1}}]"],
            "error: meta-model 'logistic' cannot be fitted on the rows outside fold 0: .*'C'",
        ),
        (
            ["run", "{cfg}", "--set", "meta.features.passthrough=[y]"],
            r"error: meta.features.passthrough selects \['y'\]: the target",
        ),
        (["run", "{cfg}", "--set", "tracking.uri=nosuch://x"], "error: cannot record the run"),
        (["predict", "{tmp}", "{tmp}/x.csv", "--output", "{tmp}/p.txt"], "must end in .csv"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(multiclass_project, tmp_path, capsys, args, match):
    cfg = multiclass_project.config(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{cfg}", str(cfg)) for a in args]
    if argv[0] == "run":
        argv += ["--quiet", "--output", str(tmp_path / "o")]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert re.search(match, err[0]), err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_cli_debug_shows_the_traceback(multiclass_project, tmp_path, where):
    cfg = multiclass_project.config(tmp_path)
    args = ["run", str(cfg), "--set", "folds.seed=5"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    proc = subprocess.run(
        [sys.executable, "-m", "stacking", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "LeakageError" in proc.stderr


def test_cli_error_subprocess_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "stacking", "run", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: config file")
    assert "Traceback" not in proc.stderr


def test_cli_inspect_shows_manifest_and_shapes(multiclass_project, capsys):
    assert main(["inspect", str(multiclass_project.root / "models/wide")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["manifest"]["n_splits"] == 3
    assert [(i["shape"], i["dtype"]) for i in info["inputs"]] == [([6], "float32")]
    assert info["hashes"] == "match"


def test_cli_cache_info_and_clear(multiclass_project, tmp_path, capsys):
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False})
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["cache", "info", "--dir", str(tmp_path / "cache")]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 14
    assert main(["cache", "clear", "--dir", str(tmp_path / "cache")]) == 0
    assert "removed 14 cache entries" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()
