"""The tracker contract (stacking/tracking/_base.py), checked for EVERY registered tracker.

:class:`TrackerContract` is the reusable suite: ``TestTrackerContract`` runs it over every
registered kind, each with its sample in ``SAMPLES``; a module that registers its own
tracker runs it too (tests/test_plugin_tracker.py). A registered kind without a sample
fails ``test_tracker_every_registered_kind_has_a_sample``.

Each kind records the results folder of the session's untracked run, then reads back
what it stored: the run with its config, the most recent runs, and the ensemble model.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from conftest import sqlite_store

from stacking.config import TrackingConfig
from stacking.errors import TrackingError
from stacking.tracking import NoopTracker, Tracker, get_tracker, record_from_results


@dataclass(frozen=True)
class TrackerSample:
    """How to configure a kind in a test folder, and whether it stores runs."""

    section: Callable[[Path], dict[str, Any]]  # the `tracking:` section, given a tmp folder
    stores: bool = True  # False: log returns None and nothing can be read back


SAMPLES: dict[str, TrackerSample] = {
    "mlflow": TrackerSample(
        lambda tmp: {"kind": "mlflow", "uri": sqlite_store(tmp), "experiment": "contract"}
    ),
    "none": TrackerSample(lambda tmp: {"kind": "none"}, stores=False),
}


def kinds_without_sample(samples: dict[str, TrackerSample]) -> set[str]:
    return set(TrackingConfig.registered()) - set(samples)


class TrackerContract:
    """The contract every tracker keeps; a subclass is parametrized with ``kind`` and sets
    ``samples`` (kind -> :class:`TrackerSample`)."""

    samples: dict[str, TrackerSample] = SAMPLES

    @pytest.fixture
    def folder(self, untracked_run: Path, tmp_path: Path) -> Path:
        """A private copy of a finished results folder."""
        return Path(shutil.copytree(untracked_run, tmp_path / "results"))

    @pytest.fixture
    def tracker(self, kind: str, tmp_path: Path) -> Tracker:
        built = get_tracker(TrackingConfig.build(self.samples[kind].section(tmp_path)))
        assert built.kind == kind  # built by the factory from the kind's own section
        return built

    def test_check_then_log_and_read_back(self, kind: str, tracker: Tracker, folder: Path) -> None:
        tracker.check()
        record = record_from_results(folder)
        run_id = tracker.log(record)
        if not self.samples[kind].stores:
            assert run_id is None and tracker.runs() == []
            with pytest.raises(TrackingError, match=rf"tracking\.kind is '{kind}'"):
                tracker.fetch_run("0" * 32)
            with pytest.raises(TrackingError, match=rf"tracking\.kind is '{kind}'"):
                tracker.download_model("models:/m-0")
            return
        assert run_id
        run = tracker.fetch_run(run_id)
        assert run.run_id == run_id and run.name == record.name
        assert run.config == yaml.safe_load((folder / "config.resolved.yaml").read_text())
        assert run.tags["stacking.data_digest"] == record.tags["stacking.data_digest"]
        assert run.metrics == pytest.approx(record.metrics)
        assert [r.run_id for r in tracker.runs()] == [run_id]  # the parent only
        predictor = tracker.download_model(f"runs:/{run_id}/ensemble")
        assert (predictor / "stack.json").is_file()
        assert tracker.run_lines(run_id)[0].endswith(run_id)

    def test_unknown_run_is_a_tracking_error(self, tracker: Tracker) -> None:
        with pytest.raises(TrackingError):
            tracker.fetch_run("0" * 32)


@pytest.mark.parametrize("kind", sorted(TrackingConfig.registered()))
class TestTrackerContract(TrackerContract):
    pass


def test_tracker_every_registered_kind_has_a_sample() -> None:
    assert TrackingConfig.registered(), "no tracker is registered"
    missing = kinds_without_sample(SAMPLES)
    assert not missing, f"add a sample to SAMPLES for {sorted(missing)}"


def test_tracker_a_kind_registered_without_a_sample_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stacking.tracking import register_tracker

    monkeypatch.setattr(TrackingConfig, "kinds", dict(TrackingConfig.registered()))

    class UnsampledConfig(TrackingConfig):
        kind: Literal["unsampled"] = "unsampled"

    register_tracker(UnsampledConfig)(type("UnsampledTracker", (NoopTracker,), {}))
    assert kinds_without_sample(SAMPLES) == {"unsampled"}
