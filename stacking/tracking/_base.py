"""The tracker plug-in contract: record a finished experiment somewhere.

The experiment builds one :class:`RunRecord` (parent run + one child per base model and
per meta candidate) and hands it to a tracker; a tracker never reaches back into the
experiment. Trackers are used from one thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ChildRecord:
    name: str
    role: str  # "base" | "meta"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    fold_metrics: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunRecord:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    children: list[ChildRecord]
    artifacts_dir: Path
    model_dir: Path | None = None  # an EnsemblePredictor folder, logged as a model
    model_example: tuple[Any, Any] | None = None  # (input rows, output): its signature
    on_run_id: Callable[[str], None] | None = None  # called before artifacts are uploaded


class Tracker(abc.ABC):
    @abc.abstractmethod
    def log(self, record: RunRecord) -> str | None:
        """Record the experiment; return its run id (``None`` when nothing is stored)."""


class NoopTracker(Tracker):
    """Records nothing (``tracking.enabled: false``, and tests of other stages)."""

    def log(self, record):
        return None


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
