"""Executors: the same predictions in process and on a real local Ray cluster."""

from __future__ import annotations

import pandas as pd
import pytest

from stacking import BaseModelError, Experiment

ray = pytest.importorskip("ray", reason="the dev extra installs ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_gives_the_local_predictions(multiclass_project, tmp_path, ray_cluster):
    local = multiclass_project.config(tmp_path / "local", **{"tracking.enabled": False})
    remote = multiclass_project.config(
        tmp_path / "ray", **{"tracking.enabled": False, "executor.kind": "ray"}
    )
    a = Experiment.from_yaml(local, output_dir=tmp_path / "a", progress=False).run()
    b = Experiment.from_yaml(remote, output_dir=tmp_path / "b", progress=False)
    assert type(b.executor).__name__ == "RayExecutor"
    result = b.run()
    assert b.cache.info()["entries"] == 14  # every Ray result was cached by the driver
    pd.testing.assert_frame_equal(a.oof, result.oof, check_exact=False, atol=1e-6)


def test_ray_executor_reraises_the_task_error(multiclass_project, tmp_path, ray_cluster):
    cfg = multiclass_project.config(
        tmp_path,
        **{
            "tracking.enabled": False,
            "executor.kind": "ray",
            "data.views": {"x": {"columns": ["f_0", "f_1"]}},
        },
    )
    with pytest.raises(BaseModelError, match="expects input shape"):
        Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
