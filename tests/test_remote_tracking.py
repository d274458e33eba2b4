"""Remote tracking, really: a real ``mlflow server`` on loopback (SQLite backend, artifact
serving into a temporary folder), an experiment recorded through it, its pyfunc model
loaded back through it, ``reproduce`` from it, and a registered model version.

One server is shared by the module; each starts from a copy of one migrated empty store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from stacking import Experiment
from stacking.cli import main
from stacking.errors import TrackingError
from stacking.executors import Executor

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def empty_store(_mlflow_store_template) -> Path:
    """An empty SQLite store with MLflow's schema (tests/conftest.py): each server starts
    from a copy instead of running the ~40 schema migrations itself (~4 s each here)."""
    return _mlflow_store_template


@contextlib.contextmanager
def mlflow_server(root: Path, template: Path):
    """``mlflow server`` on a free loopback port; stopped (its process group) on exit.

    The server's job runner (huey consumers, for MLflow's GenAI jobs) is off: nothing here
    uses it and it doubles the start-up time.
    """
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, root / "server.db")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server"]
    cmd += ["--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--serve-artifacts"]
    cmd += ["--artifacts-destination", str(root / "artifacts")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start in 180 s"
                time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, empty_store):
    root = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(root, empty_store) as (url, _proc):
        yield url, root


@pytest.fixture(scope="module")
def remote_run(server, multiclass_project, tmp_path_factory):
    url, _root = server
    tmp = tmp_path_factory.mktemp("remote-run")
    cfg = multiclass_project.config(
        tmp,
        **{
            "tracking.uri": url,
            "tracking.register_as": "tiny-ensemble",
            "meta.candidates": ["logistic", "mean"],
            "meta.bootstrap": 0,
        },
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    return result, cfg


def _ensemble(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("ensemble__")]].to_numpy()


def test_remote_run_serves_its_model_through_the_server(remote_run, server, multiclass_project):
    result, _cfg = remote_run
    url, root = server
    client = mlflow.MlflowClient(tracking_uri=url)
    run = client.get_run(result.run_id)
    assert (
        run.data.metrics["cv_log_loss"]
        == result.metrics["entries"][result.ensemble]["scores"]["log_loss"]
    )
    # Artifacts went to the server's artifact store, not a local ./mlruns.
    assert list((root / "artifacts").rglob("stack.json"))
    assert not Path("mlruns").exists() and not Path("mlartifacts").exists()
    # Unlabeled rows without an id column are served (the id is optional in the signature).
    rows = pd.read_parquet(multiclass_project.root / "test.parquet").drop(columns=["id"])
    mlflow.set_tracking_uri(url)
    try:
        model_id = run.data.tags["stacking.ensemble_model_id"]
        by_id = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(rows)
        registered = mlflow.pyfunc.load_model("models:/tiny-ensemble/1").predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
    expected = _ensemble(result.test_predictions)
    np.testing.assert_allclose(_ensemble(by_id), expected, atol=1e-10)
    np.testing.assert_allclose(_ensemble(registered), expected, atol=1e-10)
    (version,) = client.search_model_versions("name='tiny-ensemble'")
    assert version.run_id == result.run_id
    assert run.data.tags["stacking.registered_model"] == "tiny-ensemble/1"


def test_cli_predict_with_a_registered_model_uri(remote_run, server, multiclass_project, tmp_path):
    result, _cfg = remote_run
    url, _root = server
    out = tmp_path / "pred.csv"
    test = str(multiclass_project.root / "test.parquet")
    code = main(
        ["predict", "models:/tiny-ensemble/1", test, "--output", str(out), "--tracking-uri", url]
    )
    assert code == 0
    got = pd.read_csv(out)
    assert got["prediction"].tolist() == result.test_predictions["prediction"].tolist()


def test_reproduce_from_the_server(remote_run, server, tmp_path, capsys):
    result, _cfg = remote_run
    url, _root = server
    code = main(
        ["reproduce", result.run_id, "--tracking-uri", url, "--output", str(tmp_path / "again")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reproduced: 3 of 3 recorded cv_ metrics equal" in out
    new_id = out.split("new run: ")[1].split()[0]
    tags = mlflow.MlflowClient(tracking_uri=url).get_run(new_id).data.tags
    assert tags["stacking.reproduces"] == result.run_id


class _ThenStop(Executor):
    """Runs the real executor, then stops the tracking server: a store lost mid-run."""

    def __init__(self, inner: Executor, stop) -> None:
        self.inner, self.stop = inner, stop

    def run(self, jobs, on_result) -> None:
        self.inner.run(jobs, on_result)
        self.stop()


def test_server_lost_at_the_end_keeps_results_for_stacking_log(
    multiclass_project, tmp_path, capsys, empty_store
):
    from stacking.config import load_config
    from stacking.executors import get_executor

    with mlflow_server(tmp_path / "doomed", empty_store) as (url, proc):
        cfg = multiclass_project.config(
            tmp_path, **{"tracking.uri": url, "meta.candidates": ["mean"], "meta.bootstrap": 0}
        )

        stopped: list[float] = []

        def stop() -> None:  # the server crashes: gone at once
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stopped.append(time.perf_counter())

        inner = get_executor(load_config(cfg).executor, progress=False)
        experiment = Experiment.from_yaml(
            cfg, output_dir=tmp_path / "out", executor=_ThenStop(inner, stop), progress=False
        )
        with pytest.raises(TrackingError) as caught:
            experiment.run()
        # From the crash to the error: the bounded retries (seconds), not MLflow's default
        # backoff (minutes). Timed from the crash, so the computing before it, slow on a
        # loaded machine, does not count.
        waited = time.perf_counter() - stopped[0]
    message = str(caught.value)
    assert "\n" not in message
    assert f"the results are kept in {tmp_path / 'out'}" in message
    assert f"stacking log {tmp_path / 'out'}" in message
    assert waited < 120, waited
    assert (tmp_path / "out" / "metrics.json").is_file()  # nothing lost
    later = f"sqlite:///{tmp_path / 'later.db'}"
    assert main(["log", str(tmp_path / "out"), "--tracking-uri", later]) == 0
    run_id = capsys.readouterr().out.split("mlflow run: ")[1].split()[0]
    assert mlflow.MlflowClient(tracking_uri=later).get_run(run_id).info.status == "FINISHED"
