"""Trackers record finished experiments; only this package imports MLflow.

A family in Optuna's style: :class:`Tracker` in ``_base.py`` states the contract, one
module per implementation, and :func:`get_tracker` picks one by ``tracking.kind``.
Adding a tracker is one module plus ``register_tracker("kind")``.

>>> tracker = get_tracker(config.tracking)          # MlflowTracker or NoopTracker
>>> out = preflight(tracker, Path("runs/x"))         # before computing
>>> run_id = log_results(tracker, out)               # after the folder is complete
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from stacking.errors import ConfigError
from stacking.tracking._base import (
    ChildRecord,
    DatasetRecord,
    RecordedRun,
    RunRecord,
    Tracker,
    flatten,
)
from stacking.tracking._mlflow import MlflowTracker, resolved_uri
from stacking.tracking._noop import NoopTracker
from stacking.tracking._seeds import StoredRun, fetch_compared_runs, seed_run, seeds_parent

if TYPE_CHECKING:  # `stacking runs` and `log` import this package and need no config models
    from stacking.config import TrackingConfig

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
    "NoopTracker",
    "RecordedRun",
    "RunRecord",
    "StoredRun",
    "Tracker",
    "fetch_compared_runs",
    "flatten",
    "get_tracker",
    "log_results",
    "make_tracker",
    "preflight",
    "record_from_results",
    "register_tracker",
    "resolved_uri",
    "seed_run",
    "seeds_parent",
]

_TRACKERS: dict[str, Callable[[Any], Tracker]] = {
    "mlflow": lambda cfg: MlflowTracker(
        uri=cfg.uri, experiment=cfg.experiment, register_as=cfg.register_as
    ),
    "none": lambda cfg: NoopTracker(),
}


def register_tracker(kind: str, factory: Callable[[Any], Tracker]) -> None:
    """Make ``tracking.kind: <kind>`` build ``factory(tracking_config)``."""
    _TRACKERS[kind] = factory


def get_tracker(cfg: TrackingConfig) -> Tracker:
    """The tracker a :class:`~stacking.config.TrackingConfig` asks for."""
    kind = "none" if not getattr(cfg, "enabled", True) else cfg.kind
    if kind not in _TRACKERS:
        raise ConfigError(
            f"tracking.kind must be one of {sorted(_TRACKERS)}. Received: kind={kind!r}"
        )
    return _TRACKERS[kind](cfg)


make_tracker = get_tracker  # the name used before the family had a registry


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stacking.tracking' has no attribute {name!r}")
