"""One contract, every executor: each registered executor runs the same jobs on tiny real
saved Keras and ONNX models and must give :func:`run_job`'s outputs, call ``on_result`` once per
job from the calling thread, name the base model in errors, and do nothing for no job.

:class:`ExecutorContract` is the reusable suite: ``TestExecutorContract`` runs it over every
registered kind, each with its sample in ``SAMPLES``; a module that registers its own
executor runs it too (tests/test_plugin_executor.py). A registered kind without a sample
fails ``test_executor_every_registered_kind_has_a_sample``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest

from stacking import BaseModelError, Experiment
from stacking.config import BaseModelSpec, ExecutorConfig
from stacking.executors import Executor, Job, get_executor, register_executor, run_job

# kind -> its `executor:` section in these tests
SAMPLES: dict[str, dict[str, Any]] = {
    "local": {"kind": "local"},
    "prefetch": {"kind": "prefetch"},
    "ray": {"kind": "ray", "num_cpus": 1},
}
IN_ORDER = {"local", "prefetch"}  # Ray delivers in completion order


@pytest.fixture(scope="module")
def ray_session():
    """A local one-CPU Ray cluster, started once for the module (one worker: one TF import)."""
    ray = pytest.importorskip("ray", reason="the dev extra installs ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _jobs(models, names: list[str], n_inputs: int = 2) -> list[Job]:
    rng = np.random.default_rng(0)
    jobs = []
    for i, name in enumerate(names):
        inputs = [[rng.normal(size=(7 + 5 * j, 4)).astype("float32")] for j in range(n_inputs)]
        keys = [f"{name}-{i}-{j}" for j in range(n_inputs)]
        path = models[name]
        spec = BaseModelSpec(path=path, input="x")
        jobs.append(Job(model=f"m_{name}", spec=spec, path=path, inputs=inputs, keys=keys))
    return jobs


def _collect(jobs_seen: list, threads: set):
    def on_result(job, outputs):
        threads.add(threading.get_ident())
        jobs_seen.append((job, outputs))

    return on_result


def kinds_without_sample(samples: dict[str, dict[str, Any]]) -> set[str]:
    return set(ExecutorConfig.registered()) - set(samples)


class ExecutorContract:
    """The contract every executor keeps, on tiny real saved Keras and ONNX models. A
    subclass is parametrized with ``kind`` and sets ``samples`` (kind -> its ``executor:``
    section) and ``in_order`` (the kinds that deliver in list order)."""

    samples: dict[str, dict[str, Any]] = SAMPLES
    in_order: set[str] = IN_ORDER

    @pytest.fixture
    def models(self, executor_models: dict[str, Path]) -> dict[str, Path]:
        return executor_models

    @pytest.fixture
    def executor(self, kind: str, request: pytest.FixtureRequest) -> Executor:
        if kind == "ray":
            request.getfixturevalue("ray_session")
        built = get_executor(ExecutorConfig.build(self.samples[kind]), progress=False)
        assert built.kind == kind  # built by the factory from the kind's own section
        return built

    def test_gives_run_jobs_outputs_once_per_job(self, kind, models, executor):
        jobs = _jobs(models, ["a", "o", "b", "a"])
        expected = {key: out for job in jobs for key, out in zip(job.keys, run_job(job))}
        seen, threads = [], set()
        executor.run(jobs, _collect(seen, threads))
        assert sorted(id(job) for job, _ in seen) == sorted(id(job) for job in jobs)
        assert threads == {threading.get_ident()}
        if kind in self.in_order:
            assert [job for job, _ in seen] == jobs
        for job, outputs in seen:
            assert [o.shape for o in outputs] == [(len(x[0]), 3) for x in job.inputs]
            for key, out in zip(job.keys, outputs):
                np.testing.assert_array_equal(out, expected[key])

    def test_load_error_names_the_base_model(self, kind, models, executor):
        jobs = _jobs(models, ["a", "x", "b"], n_inputs=1)
        seen, threads = [], set()
        with pytest.raises(BaseModelError, match=r"base model 'm_x'.*broken\.keras"):
            executor.run(jobs, _collect(seen, threads))
        assert all(job.model != "m_x" for job, _ in seen)
        if kind in self.in_order:  # jobs before the failing one were delivered (and cached)
            assert [job.model for job, _ in seen] == ["m_a"]

    def test_input_shape_error_names_the_base_model(self, models, executor):
        (job,) = _jobs(models, ["b"], n_inputs=1)
        job.inputs = [[np.zeros((3, 6), dtype="float32")]]
        with pytest.raises(BaseModelError, match=r"base model 'm_b' .*expects input shape"):
            executor.run([job], lambda job, outputs: None)

    def test_with_no_job_does_nothing(self, executor):
        def on_result(job, outputs):
            raise AssertionError("on_result called without a job")

        assert executor.run([], on_result) is None


@pytest.mark.parametrize("kind", sorted(ExecutorConfig.registered()))
class TestExecutorContract(ExecutorContract):
    pass


def test_executor_every_registered_kind_has_a_sample():
    assert ExecutorConfig.registered(), "no executor is registered"
    missing = kinds_without_sample(SAMPLES)
    assert not missing, f"add a sample to SAMPLES for {sorted(missing)}"


def test_executor_a_kind_registered_without_a_sample_is_caught(monkeypatch):
    from stacking.executors import LocalExecutor

    monkeypatch.setattr(ExecutorConfig, "kinds", dict(ExecutorConfig.registered()))

    class UnsampledConfig(ExecutorConfig):
        kind: Literal["unsampled"] = "unsampled"

    register_executor(UnsampledConfig)(type("UnsampledExecutor", (LocalExecutor,), {}))
    assert kinds_without_sample(SAMPLES) == {"unsampled"}


def test_executor_registry_builds_every_kind_from_its_config():
    built = {
        kind: type(get_executor(ExecutorConfig.build(section), progress=False)).kind
        for kind, section in SAMPLES.items()
    }
    assert built == {kind: kind for kind in SAMPLES}
    section = {"kind": "ray", "address": "10.0.0.1:6379", "num_cpus": 2, "num_gpus": 0.5}
    ray = get_executor(ExecutorConfig.build(section))
    assert (ray.address, ray.num_cpus, ray.num_gpus) == ("10.0.0.1:6379", 2, 0.5)


def test_ray_executor_gives_the_local_predictions(multiclass_project, tmp_path, ray_session):
    """A whole experiment on the module's Ray session (started by ``ray_session``)."""
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


def test_ray_executor_reraises_the_task_error(multiclass_project, tmp_path, ray_session):
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
