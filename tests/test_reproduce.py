"""What ``stacking reproduce`` compares: every recorded ``cv_`` metric, none skipped.

The command itself, on real MLflow runs, is tested in test_serving.py and test_cli.py.
"""

from __future__ import annotations

import math

import pytest

from stacking.errors import DataError
from stacking.experiment import MetricCheck, Reproduction


def _rerun(scores: dict[str, float], ensemble: str = "nnls") -> dict:
    """The part of a re-run's ``metrics.json`` that reproduce reads."""
    return {"entries": {ensemble: {"scores": scores}, "wide": {"scores": {"log_loss": 0.3}}}}


def test_reproduction_compares_every_recorded_metric_of_the_recorded_ensemble():
    recorded = {"cv_log_loss": 0.3, "cv_roc_auc": math.nan, "cv_accuracy": 0.8, "cv_r": 2e3}
    reproduction = Reproduction("abc", recorded, "nnls")
    rerun = _rerun({"log_loss": 0.3 + 1e-12, "roc_auc": math.nan, "r": 2e3 + 1e-7, "mae": 1.0})
    checks = reproduction.compare(rerun)
    assert [c.name for c in checks] == ["cv_accuracy", "cv_log_loss", "cv_r", "cv_roc_auc"]
    assert [c.equal for c in checks] == [False, True, True, True]
    assert checks[0].reproduced is None  # recorded, not computed by the re-run: differs


@pytest.mark.parametrize(
    ("recorded", "reproduced", "equal"),
    [
        (0.3, 0.3, True),
        (0.3, 0.3 + 5e-10, True),
        (0.3, 0.3 + 2e-9, False),  # absolute 1e-9 below 1
        (1e4, 1e4 + 5e-6, True),  # relative 1e-9 above 1
        (1e4, 1e4 + 2e-5, False),
        (math.nan, math.nan, True),  # undefined both times (a one-class AUC)
        (math.nan, 0.5, False),
        (0.5, math.nan, False),
        (0.5, None, False),
    ],
)
def test_metric_check_equal_to_1e_9(recorded, reproduced, equal):
    assert MetricCheck("cv_x", recorded, reproduced).equal is equal


def test_reproduction_of_another_ensemble_finds_no_score():
    checks = Reproduction("abc", {"cv_log_loss": 0.3}, "gone").compare(_rerun({"log_loss": 0.3}))
    assert [(c.reproduced, c.equal) for c in checks] == [(None, False)]


def test_reproduction_of_a_run_without_cv_metrics_is_refused():
    with pytest.raises(DataError, match=r"^run abc recorded no cv_ metric of its ensemble, so"):
        Reproduction("abc", {}, "nnls")
