"""Trackers record finished experiments; only this package imports MLflow."""

from __future__ import annotations

from stacking.tracking._base import ChildRecord, NoopTracker, RunRecord, Tracker, flatten
from stacking.tracking._mlflow import MlflowTracker

__all__ = [
    "ChildRecord",
    "MlflowTracker",
    "NoopTracker",
    "RunRecord",
    "Tracker",
    "flatten",
    "make_tracker",
]


def make_tracker(cfg) -> Tracker:
    """The tracker a :class:`~stacking.config.TrackingConfig` asks for."""
    if not cfg.enabled:
        return NoopTracker()
    return MlflowTracker(uri=cfg.uri, experiment=cfg.experiment)
