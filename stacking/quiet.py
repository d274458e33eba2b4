"""Quiet by default: TensorFlow's start-up lines and progress-bar frames stay out of the
output wherever tf-stacking runs (the CLI, the Python API, the MLflow pyfunc model,
notebooks); ``stacking --debug`` shows them.

Importing :mod:`stacking` calls :func:`quiet_tensorflow`. Only settings the user has not
made are changed, and :func:`loud_tensorflow` undoes exactly those.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

# TensorFlow's C++ logging: INFO and WARNING off, after (TF_CPP) and before (GLOG, ABSL)
# absl is initialised. TF_ENABLE_ONEDNN_OPTS is left alone (turning oneDNN off changes
# predictions by ~6e-8). MLflow draws a progress bar per artifact download and upload
# (100+ frames for a logged ensemble, in `predict`, the pyfunc model and notebooks); MLflow
# reads the variable at each call.
_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_SET_BY_US: set[str] = set()


class _MutedImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads ``tensorflow`` with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ core writes its load-time notices (oneDNN, cudart, CPU features)
    before absl logging is initialised, where TF_CPP_MIN_LOG_LEVEL does not reach them; only
    muting the descriptor during the import does. Installed once by :func:`quiet_tensorflow`
    and removed at the first import, so later imports cost nothing.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        assert module.__spec__ is not None  # the import system made it from find_spec's spec
        module.__spec__.loader = module.__loader__ = self._loader
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self._loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ logging, MLflow's artifact bars and tqdm's notebook warning
    off stderr.

    Must run before TensorFlow is imported: the environment variables are read once, when
    its C++ core loads. A TensorFlow that fails to import still raises; ``--debug`` shows
    its C++ messages.
    """
    for key, value in _QUIET_ENV.items():
        if key not in os.environ:
            os.environ[key] = value
            _SET_BY_US.add(key)
    # MLflow imports tqdm.auto as it loads (its GenAI simulators); in a notebook without
    # ipywidgets that import alone warns, though no bar of ours or MLflow's is drawn there.
    warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _MutedImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _MutedImport())


def loud_tensorflow() -> None:
    """Undo :func:`quiet_tensorflow` (``--debug``): TensorFlow's own logging comes back if
    it is not imported yet, and MLflow's bars."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _MutedImport)]
    for key in _SET_BY_US:
        os.environ.pop(key, None)
    _SET_BY_US.clear()


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal, where a progress bar redraws one line; elsewhere
    (a log file, a pipe, a notebook cell) each redraw would be one more line."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
