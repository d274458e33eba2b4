"""Tracking and disk faults (issue 7): checked before computing, one line, nothing lost.

Some faults need another user or a resource limit, so they run ``python -m stacking`` in a
subprocess: when the tests run as root (root writes through permission bits), read-only
files are made by running it as root without the capabilities that override permission
bits, or else as user ``nobody`` (``setpriv``); the file-size limit is ``ulimit -f``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
from conftest import sqlite_store

from stacking import Experiment, results
from stacking.cli import main
from stacking.tracking import MlflowTracker, NoopTracker, preflight

ROOT = Path(__file__).resolve().parents[1]
# TensorFlow's C++ start-up notices are silenced by the CLI itself (the reliability work);
# they are not ours to count here.
_TF_NOISE = re.compile(
    r"^([EWIF]\d{4} |.*(oneDNN|cuda|TF_ENABLE_ONEDNN_OPTS|cpu_feature|absl::InitializeLog))"
)


def _stacking(args, cwd, *, unprivileged=False, file_limit_kb=None, timeout=600):
    """Run ``python -m stacking ARGS``; return (exit code, stderr lines without TF noise)."""
    cmd = [sys.executable, "-m", "stacking", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if file_limit_kb is not None:
        cmd = ["bash", "-c", f'ulimit -f {file_limit_kb} && exec "$@"', "bash", *cmd]
    if unprivileged and os.geteuid() == 0:
        cmd = [*_unprivileged_prefix(), *cmd]
        env["HOME"] = str(cwd)  # nobody's own caches (Keras, matplotlib) go there
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stderr.splitlines() if line and not _TF_NOISE.match(line)]
    return done.returncode, lines


# Root keeping its uid but losing the capabilities that bypass permission bits: it still
# reads its own checkout and virtual environment wherever they are (a 0700 `mktemp -d`
# folder, a private home), and a 0444 file is read-only to it.
_NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@functools.cache
def _unprivileged_prefix() -> tuple[str, ...]:
    """How root runs a command for which permission bits hold, or a skip with the reason.

    Dropping the override capabilities is tried first; where root may not (no CAP_SETPCAP),
    user ``nobody``, who must be able to run this Python and import tf-stacking and MLflow,
    which a private checkout or home folder does not allow.
    """
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file read-only to root")
    probe = [sys.executable, "-c", "import stacking, mlflow"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for prefix in (_NO_OVERRIDE, _NOBODY):
        done = subprocess.run(
            [*prefix, *probe], env=env, cwd="/", capture_output=True, text=True, timeout=300
        )
        if done.returncode == 0:
            return tuple(prefix)
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    pytest.skip(
        "cannot make a file read-only to root here: dropping its capabilities is refused, "
        f"and user nobody cannot run {sys.executable} with tf-stacking from {ROOT} ({last}); "
        "clone into a folder other users may read to run this test"
    )


@pytest.fixture
def shared_dir():
    """A folder every user may write, for subprocesses that run as ``nobody``."""
    path = Path(tempfile.mkdtemp(prefix="stacking-faults-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _read_only(path: Path) -> None:
    """Read-only for the subprocess: root-owned when we are root, else permission bits."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def test_unreachable_store_fails_fast_before_any_prediction(multiclass_project, tmp_path, capsys):
    cfg = multiclass_project.config(tmp_path, **{"tracking.uri": "http://127.0.0.1:9"})
    started = time.perf_counter()
    code = main(["run", str(cfg), "--output", str(tmp_path / "out")])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(
        "error: cannot record the run in MLflow at http://127.0.0.1:9: connection refused; "
        "nothing was computed"
    )
    # The retrying bug took 253 s; a fast failure takes ~1 s on a quiet machine. The bound
    # keeps the two apart with room for a loaded one (the one-line stderr above already
    # shows no retry WARNING was printed).
    assert elapsed < 60, elapsed
    # Before any prediction: nothing cached, no results folder.
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_unreachable_store_one_line_in_a_subprocess(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"tracking.uri": "http://127.0.0.1:9"})
    started = time.perf_counter()
    code, err = _stacking(["run", str(cfg)], tmp_path)
    assert code == 2 and len(err) == 1, err  # no urllib3 retry WARNING lines
    assert "connection refused" in err[0]
    # TF import included (~5 s quiet, far more on a loaded machine); was 253 s of retries.
    assert time.perf_counter() - started < 150


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_read_only_store_is_one_line(multiclass_project, shared_dir):
    store = shared_dir / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("tests")
    _read_only(store)
    cfg = multiclass_project.config(shared_dir, **{"tracking.uri": uri})
    cfg.chmod(0o644)
    code, err = _stacking(["run", str(cfg), "--quiet"], shared_dir, unprivileged=True)
    assert code == 2 and len(err) == 1, err
    assert "attempt to write a readonly database" in err[0]
    # The file system's refusal, with the store's path; not an MLflow problem to turn off.
    assert f"cannot write the MLflow store '{store / 'mlflow.db'}'" in err[0]
    assert "the file system refused a write (Permission denied)" in err[0]
    assert "Traceback" not in err[0] and "SQL" not in err[0]
    assert not (shared_dir / "runs").exists()


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_read_only_output_folder_is_one_line(multiclass_project, shared_dir):
    locked = shared_dir / "locked"
    locked.mkdir()
    _read_only(locked)
    cfg = multiclass_project.config(shared_dir, **{"tracking.enabled": False})
    cfg.chmod(0o644)
    out = locked / "run1"
    code, err = _stacking(["run", str(cfg), "--output", str(out)], shared_dir, unprivileged=True)
    assert code == 2 and len(err) == 1, err
    assert f"output directory {str(out)!r} cannot be written" in err[0]
    assert not out.exists()


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_file_size_limit_is_one_line_and_leaves_nothing(multiclass_project, tmp_path):
    cfg = multiclass_project.config(
        tmp_path, **{"tracking.enabled": False, "cache.enabled": False, "meta.bootstrap": 0}
    )
    out = tmp_path / "runs" / "limited"
    args = ["run", str(cfg), "--output", str(out), "--quiet"]
    code, err = _stacking(args, tmp_path, file_limit_kb=4)
    assert code == 2 and len(err) == 1, err
    assert "file too large" in err[0].lower() and str(out) in err[0]
    assert not out.exists() and list((tmp_path / "runs").iterdir()) == []  # no .partial


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_file_size_limit_on_the_store_is_a_file_system_error_with_its_path(
    multiclass_project, tmp_path
):
    """The start-up check's write to a fresh SQLite store refused by a file-size limit is
    the file system's refusal, with the store's path; not an MLflow problem to turn off."""
    store = tmp_path / "store"
    cfg = multiclass_project.config(tmp_path, **{"tracking.uri": f"sqlite:///{store}/m.db"})
    out = tmp_path / "runs" / "limited"
    code, err = _stacking(["run", str(cfg), "--output", str(out)], tmp_path, file_limit_kb=4)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: cannot write the MLflow store '{store / 'm.db'}': ")
    assert "the file system refused a write (File too large)" in err[0]
    assert "tracking.enabled: false" not in err[0]
    assert list(store.iterdir()) == []  # no empty m.db, no lock file beside it
    assert not out.exists()


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_two_concurrent_first_recordings_on_a_fresh_default_store(finished, tmp_path):
    """Both processes create MLflow's default ``./mlflow.db`` at once (what two first
    ``stacking run`` do at their start and end): both succeed, no `table … already exists`."""
    for i in range(2):
        shutil.copytree(finished, tmp_path / f"out{i}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen(
            [
                *[sys.executable, "-m", "stacking", "log", f"out{i}"],
                *["--tracking-uri", "sqlite:///mlflow.db", "--experiment", "race"],
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("race").experiment_id
    runs = client.search_runs([experiment], filter_string="tags.`stacking.data_digest` LIKE '%'")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}


_HANG_IN_LOGGING = """
import sys, time
from pathlib import Path
import stacking.tracking._mlflow as tracker_module
from stacking.tracking import MlflowTracker, record_from_results

def hang(*args, **kwargs):  # the model upload: killed here, mid-logging
    Path(sys.argv[3]).write_text("logging")
    time.sleep(600)

tracker_module.log_ensemble_model = hang
MlflowTracker(uri=sys.argv[1], experiment="killed").log(record_from_results(sys.argv[2]))
"""


@pytest.fixture(scope="module")
def finished(multiclass_project, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished-faults")
    cfg = multiclass_project.config(
        tmp, **{"tracking.enabled": False, "meta.candidates": ["mean"], "meta.bootstrap": 0}
    )
    Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    return tmp / "out"


def test_output_folder_of_a_complete_unrecorded_run_names_stacking_log(
    finished, multiclass_project, tmp_path, capsys
):
    """A run killed while it was being recorded left a complete folder: a rerun into it
    says so and names the command that records it; a recorded one names its run."""
    out = shutil.copytree(finished, tmp_path / "out")
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False})
    assert main(["run", str(cfg), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: output directory {str(out)!r} holds a finished run that was never recorded "
        "in MLflow (its process ended before that, or tracking was off); record it with "
        f"`stacking log {out}`, or choose another --output"
    ]
    results.update_metrics(out, run_id="0123abcd" * 4)
    assert main(["run", str(cfg), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "recorded as MLflow run 0123abcd0123abcd" in err[0], err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["run", str(cfg), "--output", str(tmp_path / "other")]) == 2
    assert "is not empty; choose another --output" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_sigkill_while_logging_is_marked_killed_by_the_next_run(finished, tmp_path):
    uri = sqlite_store(tmp_path)
    marker = tmp_path / "logging"
    script = tmp_path / "hang.py"
    script.write_text(_HANG_IN_LOGGING)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), uri, str(finished), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the logging process ended early"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("killed").experiment_id
    (killed,) = client.search_runs(
        [experiment], "tags.`stacking.data_digest` LIKE '%'"
    )  # the parent
    # A run of a live process on this host must stay RUNNING.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = client.create_run(
            experiment,
            tags={
                "stacking.host": killed.data.tags["stacking.host"],
                "stacking.pid": str(sleeper.pid),
            },
        )
        assert client.get_run(killed.info.run_id).info.status == "RUNNING"
        preflight(MlflowTracker(uri=uri, experiment="killed"), tmp_path / "runs" / "next")
        assert client.get_run(live.info.run_id).info.status == "RUNNING"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert client.get_run(killed.info.run_id).info.status == "KILLED"


def test_orphaned_partial_folders_are_removed_only_when_their_writer_is_gone(tmp_path):
    import socket

    runs = tmp_path / "runs"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    folders = {
        "dead": f"{host} {gone.pid}",
        "alive": f"{host} {os.getpid()}",
        "elsewhere": f"another-host {gone.pid}",
    }
    for name, writer in folders.items():
        (runs / f".{name}.partial").mkdir(parents=True)
        (runs / f".{name}.partial" / ".writer").write_text(writer)
    old = runs / ".unowned.partial"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    (runs / ".fresh.partial").mkdir()
    preflight(NoopTracker(), runs / "next")
    left = sorted(p.name for p in runs.iterdir())
    assert left == [".alive.partial", ".elsewhere.partial", ".fresh.partial"]


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` is true (it must still be running)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["inference", "meta"])
def test_sigkill_during_a_run_loses_nothing_and_the_rerun_is_identical(
    multiclass_project, tmp_path, stage, capsys, monkeypatch
):
    """Killed mid-inference (some cache entries written) or mid-meta-fitting (all written),
    the rerun resumes from the cache, cleans the orphan, and equals a clean run exactly."""
    import pandas as pd

    changes = {"tracking.enabled": False, "meta.bootstrap": 0}
    if stage == "meta":  # a slow candidate, so that the kill lands while it is fitted
        changes["meta.candidates"] = [
            {
                "name": "slow",
                "estimator": "mlp",
                "params": {"epochs": 400, "patience": 400, "random_state": 0},
            }
        ]
    cfg = multiclass_project.config(tmp_path, **changes)
    cache = tmp_path / "cache"
    err = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacking", "run", str(cfg), "--output", str(tmp_path / "a")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=err,
    )
    if stage == "inference":
        _kill_when(proc, lambda: len(list(cache.glob("*/*"))) >= 2, "the first cache entries")
    else:
        done = re.compile(r"^inference\s+\d+\.\d s", re.M)  # the stage line, not the bar
        _kill_when(
            proc, lambda: done.search((tmp_path / "stderr.txt").read_text()), "the meta stage"
        )
    err.close()
    assert not (tmp_path / "a").exists()
    written = len(list(cache.glob("*/*")))
    assert written >= 2

    # The rerun and the clean run need no fresh process: this one has TensorFlow loaded.
    from stacking.cli import main

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["run", str(cfg), "--output", str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().err.splitlines()
    done = next(line for line in lines if line.startswith("done"))
    hits, computed = map(int, re.search(r"cache: (\d+) hits, (\d+) computed", done).groups())
    # Every entry the killed run wrote is reused; killed in the meta stage, it had written
    # them all, so the rerun predicts nothing again.
    assert hits == written
    if stage == "meta":
        assert computed == 0
    assert not list(tmp_path.glob(".*.partial"))
    # A clean run from an empty cache gives the very same numbers.
    clean = multiclass_project.config(tmp_path / "clean", **changes)
    assert main(["run", str(clean), "--quiet", "--output", str(tmp_path / "c")]) == 0
    for name in ("oof.parquet", "test_predictions.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "b" / name), pd.read_parquet(tmp_path / "c" / name)
        )
