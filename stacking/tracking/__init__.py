"""Trackers record finished experiments; only this package imports MLflow.

A family in Optuna's style: :class:`Tracker` in ``_base.py`` states the contract, each
tracker is one module holding its config class and its class, registered together with
:func:`register_tracker`, and :func:`get_tracker` builds the one a ``tracking:`` section
names.

>>> tracker = get_tracker(config.tracking)          # MlflowTracker or NoopTracker
>>> out = preflight(tracker, Path("runs/x"))         # before computing
>>> run_id = log_results(tracker, out)               # after the folder is complete
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from stacking.tracking._base import (
    ChildRecord,
    DatasetRecord,
    RecordedRun,
    RunRecord,
    Tracker,
    flatten,
    get_tracker,
    register_tracker,
)
from stacking.tracking._mlflow import MlflowTracker, MlflowTrackingConfig, resolved_uri
from stacking.tracking._noop import NoopTracker, NoopTrackingConfig
from stacking.tracking._seeds import StoredRun, fetch_compared_runs, seed_run, seeds_parent

# The results-folder path (pandas, the fold plan, scikit-learn) loads on first use, so that
# `stacking runs` imports only MLflow's client.
_LAZY = {
    name: "stacking.tracking._record"
    for name in ("log_results", "preflight", "record_from_results")
}

__all__ = [
    "ChildRecord",
    "DatasetRecord",
    "MlflowTracker",
    "MlflowTrackingConfig",
    "NoopTracker",
    "NoopTrackingConfig",
    "RecordedRun",
    "RunRecord",
    "StoredRun",
    "Tracker",
    "fetch_compared_runs",
    "flatten",
    "get_tracker",
    "log_results",
    "preflight",
    "record_from_results",
    "register_tracker",
    "resolved_uri",
    "seed_run",
    "seeds_parent",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stacking.tracking' has no attribute {name!r}")
