"""A new tracker, added by this module alone: its config class and its class, registered
with ``@register_tracker``, then named by a config (``tracking: {kind: json, folder: …}``)
that ``stacking run`` runs end to end, with no change anywhere else. It also keeps the
tracker contract (the reusable :class:`TrackerContract`)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import yaml
from conftest import UNTRACKED, assert_same_results
from pydantic import Field
from test_tracking_conformance import TrackerContract, TrackerSample

from stacking.cli import main
from stacking.config import TrackingConfig
from stacking.errors import TrackingError
from stacking.tracking import RecordedRun, RunRecord, Tracker, record_from_results, register_tracker


class JsonTrackingConfig(TrackingConfig):
    """Each run as ``FOLDER/<run id>/run.json``, with its ensemble beside it."""

    kind: Literal["json"] = "json"
    folder: Path = Field(description="where runs are written")


class JsonTracker(Tracker):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_config(cls, cfg: JsonTrackingConfig) -> JsonTracker:
        return cls(cfg.folder)

    def check(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"cannot write runs to {str(self.folder)!r}: {exc}") from exc

    def log(self, record: RunRecord) -> str:
        run_id = uuid.uuid4().hex
        where = self.folder / run_id
        where.mkdir()
        if record.model_dir is not None:
            shutil.copytree(record.model_dir, where / "ensemble")
        config = yaml.safe_load((record.artifacts_dir / "config.resolved.yaml").read_text())
        run = {
            "run_id": run_id,
            "name": record.name,
            "start_time": time.time_ns() // 1_000_000,
            "status": "FINISHED",
            "config": config,
            "tags": record.tags,
            "metrics": record.metrics,
            "children": [child.name for child in record.children],
        }
        (where / "run.json").write_text(json.dumps(run, default=str))
        return run_id

    def _read(self, run_id: str) -> dict:
        path = self.folder / run_id / "run.json"
        if not path.is_file():
            raise TrackingError(f"no run {run_id!r} in {str(self.folder)!r}")
        return json.loads(path.read_text())

    def fetch_run(self, run_id: str) -> RecordedRun:
        run = self._read(run_id)
        del run["children"]
        return RecordedRun(**run)

    def download_model(self, uri: str) -> Path:
        run_id = uri.removeprefix("runs:/").partition("/")[0]
        self._read(run_id)
        return self.folder / run_id / "ensemble"

    def runs(self, max_results: int = 20) -> list[RecordedRun]:
        found = [self.fetch_run(p.parent.name) for p in self.folder.glob("*/run.json")]
        return sorted(found, key=lambda r: -r.start_time)[:max_results]

    def run_lines(self, run_id: str) -> list[str]:
        return [f"json run: {run_id}", f"written to {self.folder / run_id}"]


@pytest.fixture(scope="module", autouse=True)
def json_kind() -> Iterator[None]:
    """Register the kind for this module's tests only (the registry is process-wide)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrackingConfig, "kinds", dict(TrackingConfig.registered()))
        register_tracker(JsonTrackingConfig)(JsonTracker)
        yield


@pytest.mark.parametrize("kind", ["json"])
class TestJsonTrackerContract(TrackerContract):
    samples = {"json": TrackerSample(lambda tmp: {"kind": "json", "folder": str(tmp / "runs")})}


def test_plugin_tracker_records_a_stacking_run_named_in_the_config(
    multiclass_project, untracked_run, tmp_path, capsys
):
    runs = tmp_path / "json-runs"
    section = {"kind": "json", "folder": str(runs), "run_name": "via-json"}
    cfg = multiclass_project.config(tmp_path, **{**UNTRACKED, "tracking": section})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    (run_id,) = [p.name for p in runs.iterdir()]
    assert f"json run: {run_id}\nwritten to {runs / run_id}" in printed
    assert json.loads((out / "metrics.json").read_text())["run_id"] == run_id
    recorded = json.loads((runs / run_id / "run.json").read_text())
    assert recorded["name"] == "via-json"
    assert recorded["config"]["tracking"] == {"enabled": True, **section, "folder": str(runs)}
    assert recorded["metrics"] == pytest.approx(record_from_results(untracked_run).metrics)
    assert (runs / run_id / "ensemble" / "stack.json").is_file()
    assert_same_results(out, untracked_run)
