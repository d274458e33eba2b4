"""The `stacking` command: exit codes, one-line errors, and what it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import sqlite_store

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
        (
            ["predict", "{tmp}", "{tmp}/x.csv", "--output", "{tmp}/no/p.csv"],
            r"error: --output '.*/no/p\.csv': there is no folder '.*/no'",
        ),
        (
            ["run", "{cfg}", "--submission", "{tmp}/no/s.csv"],
            r"error: --submission '.*/no/s\.csv': there is no folder '.*/no'",
        ),
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
    """--debug, before or after the command, lets the error propagate (Python prints its
    traceback) instead of the one-line message."""
    from stacking.errors import LeakageError

    cfg = multiclass_project.config(tmp_path)
    args = ["run", str(cfg), "--set", "folds.seed=5"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    with pytest.raises(LeakageError):
        main(args)


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


def test_cli_cache_verify_finds_a_flipped_byte_and_a_rerun_repairs_it(
    multiclass_project, tmp_path, capsys, caplog
):
    """The issue's silent corruption: a low byte of a cached prediction flipped. verify
    names the entry (exit 2); the next run warns once, recomputes, and gives the clean
    run's numbers; verify is clean again."""
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False})
    cache = str(tmp_path / "cache")
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "clean")]) == 0
    assert main(["cache", "verify", "--dir", cache]) == 0
    assert "all 14 cache entries" in capsys.readouterr().out
    entry = sorted((tmp_path / "cache").rglob("*.npy"))[3]
    data = bytearray(entry.read_bytes())
    data[-60] ^= 0x01  # a low-order mantissa byte of the last prediction
    entry.write_bytes(bytes(data))

    assert main(["cache", "verify", "--dir", cache]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cache ")
    assert f"1 of 14 entries are corrupt: {entry.name} (checksum mismatch" in err[0]

    caplog.clear()
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "again")]) == 0
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and entry.name in dropped[0].getMessage()
    clean = pd.read_parquet(tmp_path / "clean" / "oof.parquet")
    again = pd.read_parquet(tmp_path / "again" / "oof.parquet")
    pd.testing.assert_frame_equal(clean, again, check_exact=True)
    capsys.readouterr()
    assert main(["cache", "verify", "--dir", cache]) == 0


def test_cli_reproduce_refuses_imports_outside_stacking_and_sklearn(
    multiclass_project, tmp_path, capsys, monkeypatch
):
    """A recorded config naming a class of some other module is refused, and the module is
    never imported, unless --trust-imports."""
    (tmp_path / "my_estimators.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n\n\n"
        "class Shrunk(LogisticRegression):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = multiclass_project.config(
        tmp_path, **{"meta.candidates": ["my_estimators.Shrunk"], "meta.bootstrap": 0}
    )
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "first")]) == 0
    run_id = capsys.readouterr().out.split("mlflow run: ")[1].split()[0]
    uri = sqlite_store(tmp_path)
    monkeypatch.delitem(sys.modules, "my_estimators")

    argv = ["reproduce", run_id, "--tracking-uri", uri, "--output", str(tmp_path / "re")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.match(
        rf"error: run {run_id}'s config: meta.candidates.0 names 'my_estimators.Shrunk', "
        r"outside stacking\. and sklearn\.; .* pass --trust-imports",
        err[0],
    ), err[0]
    assert "my_estimators" not in sys.modules
    assert not (tmp_path / "re").exists()

    assert main([*argv, "--trust-imports"]) == 0
    assert "reproduced: 3 of 3 recorded cv_ metrics equal" in capsys.readouterr().out


def test_cli_candidate_that_is_a_function_is_never_called(multiclass_project, tmp_path, capsys):
    """Issue 7: `{estimator: subprocess.check_call, params: {args: [touch, FILE]}}` ran the
    command. Now it is refused before anything is called."""
    pwned = tmp_path / "pwned"
    cfg = multiclass_project.config(
        tmp_path,
        **{
            "meta.candidates": [
                {"estimator": "subprocess.check_call", "params": {"args": ["touch", str(pwned)]}}
            ]
        },
    )
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: meta.candidates: 'subprocess.check_call' is not a scikit-learn estimator class "
        "(it is function); name an estimator class such as "
        "sklearn.linear_model.LogisticRegression"
    ]
    assert not pwned.exists() and not (tmp_path / "o").exists()


def test_cli_debug_shows_tensorflow_logging_again(tmp_path):
    """Without --debug TensorFlow's C++ notices are muted (one stderr line: see
    tests/test_bad_inputs.py::test_bad_input_in_a_subprocess_has_no_tensorflow_noise);
    --debug shows them again, with the traceback."""
    (tmp_path / "broken.keras").write_bytes(b"not a zip file")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG", "ABSL"))}
    argv = ["--debug", "inspect", str(tmp_path / "broken.keras")]
    proc = subprocess.run(
        [sys.executable, "-m", "stacking", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "BaseModelError" in proc.stderr
    assert "oneDNN" in proc.stderr or "cuda" in proc.stderr  # TF's own lines are back


def test_cli_run_prints_one_line_per_stage_and_a_summary(multiclass_project, tmp_path, capsys):
    cfg = multiclass_project.config(tmp_path, **{"meta.candidates": ["logistic", "mean"]})
    assert main(["run", str(cfg), "--output", str(tmp_path / "loud")]) == 0
    err = capsys.readouterr().err
    stages = [line.split()[0] for line in err.splitlines() if line and line[0].isalpha()]
    for stage in ["checks", "data", "inference", "meta", "scores", "intervals", "results"]:
        assert stage in stages, err
    assert stages.count("meta") == 4  # a line when each candidate starts and when it ends
    assert stages[-1] == "done" and "tracking" in stages
    assert "\r" not in err and "%|" not in err  # stderr is no terminal: no bar frames
    computed = re.search(r"cache: 0 hits, (\d+) computed", err.splitlines()[-1])
    assert computed and int(computed.group(1)) > 0
    # --quiet: the leaderboard only.
    assert main(["run", str(cfg), "--quiet", "--output", str(tmp_path / "quiet")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith("leaderboard")
    # A warm rerun says that every prediction came from the cache.
    assert main(["run", str(cfg), "--output", str(tmp_path / "warm")]) == 0
    last = capsys.readouterr().err.splitlines()[-1]
    assert f"cache: {computed.group(1)} hits, 0 computed" in last
