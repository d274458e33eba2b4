"""Trackers record finished experiments; only this package imports MLflow."""

from __future__ import annotations

from stacking.tracking._base import ChildRecord, NoopTracker, RunRecord, Tracker, flatten
from stacking.tracking._mlflow import MlflowTracker, download_model, fetch_run, resolved_uri

__all__ = [
    "ChildRecord",
    "MlflowTracker",
    "NoopTracker",
    "RunRecord",
    "Tracker",
    "download_model",
    "fetch_run",
    "flatten",
    "make_tracker",
    "resolved_uri",
]


def make_tracker(cfg) -> Tracker:
    """The tracker a :class:`~stacking.config.TrackingConfig` asks for."""
    if not cfg.enabled:
        return NoopTracker()
    return MlflowTracker(uri=cfg.uri, experiment=cfg.experiment)
