"""The tracker plug-in contract: record finished experiments, and read them back.

A run is recorded from its finished results folder: :func:`~stacking.tracking.record_from_results`
builds one :class:`RunRecord` (parent run + one child per base model and per meta
candidate) from the files in it, and a tracker stores it; a tracker never reaches back
into the experiment, so ``stacking run`` and ``stacking log RESULTS_DIR`` share one path.

Contract of every :class:`Tracker`:

- used from one thread; it holds no open connection between calls;
- :meth:`~Tracker.check` is cheap (seconds), is called before any computing, and raises
  :class:`~stacking.errors.TrackingError` with one line when the store is unreachable or
  read-only; it may also tidy what an earlier, killed process left behind;
- :meth:`~Tracker.log` stores a record and returns the run id (``None`` when the tracker
  stores nothing); failures are a ``TrackingError`` and never delete the results folder;
- :meth:`~Tracker.fetch_run`, :meth:`~Tracker.download_model` and :meth:`~Tracker.runs`
  read back what :meth:`~Tracker.log` stored, for ``reproduce``, ``predict`` and ``runs``.

A tracker is one module holding its config class (a :class:`~stacking.config.TrackingConfig`
subclass with ``kind: Literal["name"]`` and its keys) and its :class:`Tracker` subclass,
registered together with ``@register_tracker(ItsConfig)``; :func:`get_tracker` builds the
one a ``tracking:`` section names. ``tests/test_tracking_conformance.py`` checks this
contract for every registered kind.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from stacking.config import TrackingConfig
from stacking.errors import ConfigError


@dataclass
class ChildRecord:
    """A nested run: one base model or one meta candidate."""

    name: str
    role: str  # "base" | "meta"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    fold_metrics: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetRecord:
    """A table the run read, described without its rows (``digest``: full content)."""

    context: str  # "training" | "test"
    source: str
    digest: str
    n_rows: int
    columns: dict[str, str]  # name -> dtype


@dataclass
class RunRecord:
    """Everything a tracker stores for one experiment, read from its results folder."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    children: list[ChildRecord]
    artifacts_dir: Path
    model_dir: Path | None = None  # an EnsemblePredictor folder, logged as a model
    model_example: tuple[Any, Any] | None = None  # (input rows, output): its signature
    datasets: list[DatasetRecord] = field(default_factory=list)


@dataclass
class RecordedRun:
    """A run read back from a store: what ``reproduce`` and ``runs`` need."""

    run_id: str
    name: str
    start_time: int  # milliseconds since the epoch
    status: str
    config: dict[str, Any] | None
    tags: dict[str, str]
    metrics: dict[str, float]


class Tracker(abc.ABC):
    """Base class of trackers; see the module docstring for the contract.

    :func:`register_tracker` sets ``kind``; a tracker builds itself from its
    ``tracking:`` section in :meth:`from_config`.
    """

    kind: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: Any) -> Tracker:
        """This tracker configured by its ``tracking:`` section (``cfg.kind == kind``)."""
        return cls()

    def run_lines(self, run_id: str) -> list[str]:
        """What ``stacking run`` prints about a recorded run: its id and where to see it."""
        return [f"{self.kind} run: {run_id}"]

    def experiments_with_runs(self) -> dict[str, int]:
        """Experiment name -> number of recorded runs in the tracker's store (``stacking
        runs`` suggests another experiment when the one asked for has none)."""
        return {}

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ``TrackingError`` (one line, in seconds) unless :meth:`log` can succeed."""

    @abc.abstractmethod
    def log(self, record: RunRecord) -> str | None:
        """Record the experiment; return its run id (``None`` when nothing is stored)."""

    @abc.abstractmethod
    def fetch_run(self, run_id: str) -> RecordedRun:
        """The recorded run ``run_id`` with its resolved config; ``TrackingError`` if absent."""

    @abc.abstractmethod
    def download_model(self, uri: str) -> Path:
        """The predictor folder of a logged ``ensemble`` model (``runs:/…``, ``models:/…``)."""

    @abc.abstractmethod
    def runs(self, max_results: int = 20) -> list[RecordedRun]:
        """The most recent parent runs of the tracker's experiment, newest first."""


T = TypeVar("T", bound=type[Tracker])


def register_tracker(config: type[TrackingConfig]) -> Callable[[T], T]:
    """Class decorator: make the class the tracker of ``tracking: {kind: ...}``, the kind
    and keys of ``config`` (its module's :class:`~stacking.config.TrackingConfig`)::

        class JsonTrackingConfig(TrackingConfig):
            kind: Literal["json"] = "json"
            folder: Path

        @register_tracker(JsonTrackingConfig)
        class JsonTracker(Tracker): ...
    """

    def register(cls: T) -> T:
        TrackingConfig.register(config, cls)
        cls.kind = config.kind_name()
        return cls

    return register


def get_tracker(cfg: TrackingConfig) -> Tracker:
    """The tracker a ``tracking:`` section asks for (``enabled: false``: kind ``none``)."""
    if not cfg.enabled:
        cfg = TrackingConfig.build({"kind": "none"})
    implementation = type(cfg).implementation
    if not (isinstance(implementation, type) and issubclass(implementation, Tracker)):
        raise ConfigError(
            f"tracking.kind {cfg.kind!r} is not a tracker; "
            f"use one of {sorted(TrackingConfig.registered())}"
        )
    return implementation.from_config(cfg)


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
