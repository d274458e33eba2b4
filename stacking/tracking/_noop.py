"""The tracker that records nothing (``tracking.kind: none``; tests of other stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from stacking.config import TrackingConfig
from stacking.errors import TrackingError
from stacking.tracking._base import RecordedRun, RunRecord, Tracker, register_tracker


class NoopTrackingConfig(TrackingConfig):
    """Records nothing (the same as `enabled: false`)."""

    kind: Literal["none"] = "none"


@register_tracker(NoopTrackingConfig)
class NoopTracker(Tracker):
    """Stores nothing: :meth:`log` returns ``None`` and there is no run to read back."""

    def check(self) -> None:
        return None

    def log(self, record: RunRecord) -> None:
        return None

    def fetch_run(self, run_id: str) -> RecordedRun:
        raise TrackingError(
            f"tracking.kind is 'none', so no run can be read back. Received: run_id={run_id!r}; "
            "pass --tracking-uri or set tracking.kind: mlflow"
        )

    def download_model(self, uri: str) -> Path:
        raise TrackingError(
            f"tracking.kind is 'none', so no model can be downloaded. Received: uri={uri!r}; "
            "pass a results directory instead"
        )

    def runs(self, max_results: int = 20) -> list[RecordedRun]:
        return []
