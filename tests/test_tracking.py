"""The tracker family: one conformance test for every tracker, the run record built from a
results folder, MLflow datasets and provenance, and the ``log`` and ``runs`` commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from conftest import sqlite_store

from stacking.cli import main
from stacking.config import TrackingConfig
from stacking.errors import TrackingError
from stacking.tracking import (
    MlflowTracker,
    NoopTracker,
    get_tracker,
    log_results,
    record_from_results,
)


@pytest.fixture
def folder(untracked_run, tmp_path):
    """A private copy of a finished folder (logging writes the run id into it)."""
    return shutil.copytree(untracked_run, tmp_path / "results")


def test_disabled_tracking_records_nothing_whatever_the_kind():
    """``enabled: false`` keeps the section's keys valid and builds the none tracker."""
    off = TrackingConfig.build({"enabled": False, "uri": "sqlite:///x.db"})
    assert isinstance(get_tracker(off), NoopTracker)
    assert isinstance(get_tracker(TrackingConfig.build({"kind": "none"})), NoopTracker)
    mlflow_tracker = get_tracker(TrackingConfig.build({"uri": "sqlite:///x.db"}))
    assert isinstance(mlflow_tracker, MlflowTracker) and mlflow_tracker.uri == "sqlite:///x.db"


def test_record_from_results_uses_design_names(folder):
    record = record_from_results(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    ensemble = metrics["ensemble"]
    assert record.tags["stacking.ensemble"] == ensemble
    assert record.metrics["cv_log_loss"] == metrics["entries"][ensemble]["scores"]["log_loss"]
    for base in ("wide", "logit", "outside"):
        assert f"base.{base}.cv_accuracy" in record.metrics
    roles = {c.name: c.role for c in record.children}
    assert roles == {
        "wide": "base",
        "logit": "base",
        "outside": "base",
        "logistic": "meta",
        "mean": "meta",
    }
    wide = next(c for c in record.children if c.name == "wide")
    assert wide.params["path"].endswith("models/wide")
    assert len(wide.fold_metrics["log_loss"]) == 3
    # The signature example holds the id and the view's columns only: no target, no weight.
    rows, output = record.model_example
    assert list(rows.columns) == ["id", *[f"f_{i}" for i in range(6)]]
    assert "prediction" in output.columns


def test_log_results_records_datasets_provenance_and_run_id(folder, tmp_path):
    uri = sqlite_store(tmp_path)
    tracker = MlflowTracker(uri=uri, experiment="datasets")
    run_id = log_results(tracker, folder, tags={"stacking.note": "hello"})
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["run_id"] == run_id
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    inputs = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "test"}
    # The project's full-content digest, not MLflow's 10,000-row one.
    assert inputs["training"].digest == metrics["data_digest"]
    assert inputs["test"].digest == metrics["datasets"]["test"]["digest"]
    assert "f_0" in inputs["training"].schema
    tags = run.data.tags
    assert tags["stacking.note"] == "hello"
    assert tags["stacking.version.mlflow"] == mlflow.__version__
    for lib in ("python", "tensorflow", "keras", "scikit-learn", "tf-stacking"):
        assert tags[f"stacking.version.{lib}"] not in ("", "unknown"), lib
    assert tags["stacking.pid"].isdigit() and tags["stacking.host"]


def test_cli_log_records_a_folder_once(folder, tmp_path, capsys):
    uri = sqlite_store(tmp_path)
    assert main(["log", str(folder), "--tracking-uri", uri, "--experiment", "later"]) == 0
    run_id = capsys.readouterr().out.split("mlflow run: ")[1].split()[0]
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    recorded = json.loads((folder / "metrics.json").read_text())
    assert recorded["run_id"] == run_id
    assert run.data.metrics["cv_log_loss"] == pytest.approx(
        recorded["entries"][recorded["ensemble"]]["scores"]["log_loss"]
    )
    assert client.get_experiment(run.info.experiment_id).name == "later"
    # Logging the same folder twice is refused (one line) unless --again.
    assert main(["log", str(folder), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already recorded as MLflow run" in err[0], err


def test_cli_log_refuses_a_folder_that_is_not_results(tmp_path, capsys):
    assert main(["log", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a finished results folder" in err[0], err


def test_cli_runs_compares_recent_runs(folder, tmp_path, capsys):
    uri = sqlite_store(tmp_path)
    tracker = MlflowTracker(uri=uri, experiment="compare")
    first = tracker.log(record_from_results(folder))
    second = tracker.log(record_from_results(folder))
    code = main(["runs", "--experiment", "compare", "--tracking-uri", uri])
    out = capsys.readouterr().out
    assert code == 0, out
    header, *rows = out.strip().splitlines()
    assert len(rows) == 2  # parents only
    assert rows[0].split()[2] == second[:12] and rows[1].split()[2] == first[:12]
    for column in ("ensemble", "cv_log_loss", "cv_accuracy", "data", "folds"):
        assert column in header
    digest = json.loads((folder / "metrics.json").read_text())["data_digest"]
    assert digest[:8] in rows[0]


def test_cli_runs_filters_one_metric(folder, tmp_path, capsys):
    uri = sqlite_store(tmp_path)
    MlflowTracker(uri=uri, experiment="compare").log(record_from_results(folder))
    code = main(["runs", "--experiment", "compare", "--tracking-uri", uri, "--metric", "accuracy"])
    header = capsys.readouterr().out.splitlines()[0]
    assert code == 0
    assert "cv_accuracy" in header and "cv_log_loss" not in header
    code = main(["runs", "--experiment", "compare", "--tracking-uri", uri, "--metric", "nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no run records a metric 'nope'" in err[0]


def test_cli_accepts_the_short_run_id_runs_prints(folder, tmp_path, capsys):
    """`stacking runs` shows 12 characters; `predict runs:/<those>/ensemble` and
    `fetch_run` (what `reproduce` reads) find the run by them."""
    uri = sqlite_store(tmp_path)
    run_id = MlflowTracker(uri=uri, experiment="short").log(record_from_results(folder))
    assert main(["runs", "--experiment", "short", "--tracking-uri", uri]) == 0
    short = capsys.readouterr().out.strip().splitlines()[1].split()[2]
    assert short == run_id[:12]
    assert MlflowTracker(uri=uri).fetch_run(short).run_id == run_id
    rows = tmp_path / "rows.parquet"
    pd.read_parquet(folder / "ensemble" / "example_input.parquet").to_parquet(rows)
    argv = ["predict", f"runs:/{short}/ensemble", str(rows), "--output", str(tmp_path / "p.csv")]
    assert main([*argv, "--tracking-uri", uri]) == 0, capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(pd.read_parquet(rows))


def test_ambiguous_and_unknown_short_run_ids_are_one_line(tmp_path):
    uri = sqlite_store(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("many")
    # 17 runs: two of them share a first hex digit (pigeonhole), so that prefix is ambiguous.
    ids = [
        client.create_run(experiment, tags={"stacking.data_digest": "d"}).info.run_id
        for _ in range(17)
    ]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    tracker = MlflowTracker(uri=uri)
    with pytest.raises(
        TrackingError, match=rf"run id '{first}' is ambiguous .* it starts \d+ runs"
    ):
        tracker.fetch_run(first)
    prefix = next(
        p for p in ("abcdef", "fedcba", "012345") if not any(map(str.startswith, ids, [p] * 17))
    )
    with pytest.raises(TrackingError, match=rf"no run '{prefix}' in .*copy an id from"):
        tracker.fetch_run(prefix)
    assert tracker.resolve_run_id(client, ids[0][:20]) == ids[0]


def test_cli_runs_without_experiment_lists_the_experiments_with_runs(folder, tmp_path, capsys):
    uri = sqlite_store(tmp_path)
    MlflowTracker(uri=uri, experiment="mine").log(record_from_results(folder))
    assert main(["runs", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (
        "no runs in experiment 'tf-stacking'; experiments with runs: mine (1 run); "
        "e.g. stacking runs --experiment mine"
    )
    assert main(["runs", "--tracking-uri", uri, "--experiment", "mien"]) == 0
    assert "experiments with runs: mine (1 run)" in capsys.readouterr().out


def test_cli_runs_marks_runs_of_dead_processes_killed(tmp_path, capsys):
    """A run left RUNNING by a process that is gone is KILLED by the next command that
    opens the store (here `stacking runs`); a run of a live process stays RUNNING."""
    from stacking.tracking._store import HOST

    uri = sqlite_store(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("tf-stacking")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tags = {"stacking.data_digest": "d", "stacking.host": HOST}
    gone = client.create_run(experiment, tags={**tags, "stacking.pid": str(dead.pid)})
    alive = client.create_run(experiment, tags={**tags, "stacking.pid": str(os.getppid())})
    assert main(["runs", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert client.get_run(gone.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert "KILLED" in out and "RUNNING" in out


def test_check_leaves_only_the_store_in_the_users_folder(tmp_path):
    """No `.mlflow.db.lock` beside a store kept in a repository (an untracked file after
    every run); the lock lives in the temporary folder."""
    folder = tmp_path / "repo"
    MlflowTracker(uri=sqlite_store(folder)).check()
    assert sorted(p.name for p in folder.iterdir()) == ["mlflow.db"]


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_pyfunc_model_loads_without_tensorflow_start_up_lines(folder, tmp_path):
    """A user's own `mlflow.pyfunc.load_model` in a fresh process: the model's code imports
    tf-stacking, which keeps TensorFlow's C++ start-up lines off stderr."""
    uri = sqlite_store(tmp_path)
    run_id = MlflowTracker(uri=uri, experiment="pyfunc").log(record_from_results(folder))
    rows = folder / "ensemble" / "example_input.parquet"
    code = (
        "import mlflow, pandas as pd; "
        f"m = mlflow.pyfunc.load_model('runs:/{run_id}/ensemble'); "
        f"print(len(m.predict(pd.read_parquet({str(rows)!r}))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "ABSL_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(pd.read_parquet(rows)))
    noise = [line for line in done.stderr.splitlines() if "oneDNN" in line or "cuda" in line]
    assert not noise, done.stderr
