"""Quiet by default wherever tf-stacking is imported: TensorFlow's start-up lines and
MLflow's artifact bars stay out of scripts, notebooks and the pyfunc model; settings the
user made are kept; progress bars draw only on a terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacking.config import BaseModelSpec
from stacking.executors._base import Job, progress_bar
from stacking.quiet import is_terminal

ROOT = Path(__file__).resolve().parents[1]
_OURS = ("TF_", "GLOG_", "ABSL_", "MLFLOW_ENABLE_ARTIFACTS")


def _python(code: str, **env_extra: str) -> subprocess.CompletedProcess:
    """``python -c code`` with a user's environment: none of the muting variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.slow  # a subprocess that imports TensorFlow
def test_importing_stacking_keeps_tensorflow_start_up_lines_off_stderr():
    code = (
        "import os, stacking, tensorflow as tf; tf.constant(1.0) + 1.0; "
        "print(os.environ['MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'])"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # without the import of stacking first: oneDNN, cuda lines
    assert done.stdout.strip() == "false"  # MLflow's download bars are off too


def test_the_users_own_settings_win_and_loud_undoes_only_ours():
    code = (
        "import os, stacking; from stacking.quiet import loud_tensorflow; "
        "print(os.environ['MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'], "
        "os.environ['TF_CPP_MIN_LOG_LEVEL']); loud_tensorflow(); "
        "print(os.environ['MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR'], "
        "os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    )
    done = _python(code, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["true 3", "true None"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal(monkeypatch):
    spec = BaseModelSpec(path=Path("m.keras"), input="x")
    jobs = [Job(model="m", spec=spec, path=Path("m.keras"), inputs=[], keys=[])]
    for stream, drawn in [(io.StringIO(), False), (_Terminal(), True)]:
        monkeypatch.setattr(sys, "stderr", stream)
        bar = progress_bar(jobs, progress=True)
        for _ in bar:
            pass
        bar.close()
        assert ("100%|" in stream.getvalue()) is drawn, stream.getvalue()
    assert not is_terminal(object()) and is_terminal(_Terminal())
