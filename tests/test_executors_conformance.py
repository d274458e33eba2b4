"""One contract, every executor: each registered executor runs the same jobs on tiny real
saved Keras and ONNX models and must give :func:`run_job`'s outputs, call ``on_result`` once per
job from the calling thread, name the base model in errors, and do nothing for no job.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_onnx_mlp

from stacking import BaseModelError, Experiment
from stacking.config import (
    BaseModelSpec,
    LocalExecutorConfig,
    PrefetchExecutorConfig,
    RayExecutorConfig,
)
from stacking.executors import Job, get_executor, run_job

CONFIGS = {
    "local": LocalExecutorConfig(),
    "prefetch": PrefetchExecutorConfig(),
    "ray": RayExecutorConfig(num_cpus=1),
}
IN_ORDER = {"local", "prefetch"}  # Ray delivers in completion order


def _save(path: Path, units: int, seed: int) -> Path:
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(units, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    if path.suffix == ".onnx":  # the same kind of network, run by ONNX Runtime
        return write_onnx_mlp(model, path)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("executor_models")
    broken = root / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    return {
        "a": _save(root / "a.keras", 8, 0),
        "b": _save(root / "b.keras", 5, 1),
        "o": _save(root / "o.onnx", 6, 2),
        "x": broken,
    }


@pytest.fixture(scope="module")
def executors():
    """Every kind, Ray on a local one-CPU cluster started once for the module."""
    ray = pytest.importorskip("ray", reason="the dev extra installs ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # one worker: one TF import
    yield {kind: get_executor(cfg, progress=False) for kind, cfg in CONFIGS.items()}
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


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_executor_gives_run_jobs_outputs_once_per_job(kind, models, executors):
    jobs = _jobs(models, ["a", "o", "b", "a"])
    expected = {key: out for job in jobs for key, out in zip(job.keys, run_job(job))}
    seen, threads = [], set()
    executors[kind].run(jobs, _collect(seen, threads))
    assert sorted(id(job) for job, _ in seen) == sorted(id(job) for job in jobs)
    assert threads == {threading.get_ident()}
    if kind in IN_ORDER:
        assert [job for job, _ in seen] == jobs
    for job, outputs in seen:
        assert [o.shape for o in outputs] == [(len(x[0]), 3) for x in job.inputs]
        for key, out in zip(job.keys, outputs):
            np.testing.assert_array_equal(out, expected[key])


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_executor_load_error_names_the_base_model(kind, models, executors):
    jobs = _jobs(models, ["a", "x", "b"], n_inputs=1)
    seen, threads = [], set()
    with pytest.raises(BaseModelError, match=r"base model 'm_x'.*broken\.keras"):
        executors[kind].run(jobs, _collect(seen, threads))
    assert all(job.model != "m_x" for job, _ in seen)
    if kind in IN_ORDER:  # jobs before the failing one were delivered (and cached)
        assert [job.model for job, _ in seen] == ["m_a"]


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_executor_input_shape_error_names_the_base_model(kind, models, executors):
    (job,) = _jobs(models, ["b"], n_inputs=1)
    job.inputs = [[np.zeros((3, 6), dtype="float32")]]
    with pytest.raises(BaseModelError, match=r"base model 'm_b' .*expects input shape"):
        executors[kind].run([job], lambda job, outputs: None)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_executor_with_no_job_does_nothing(kind, executors):
    def on_result(job, outputs):
        raise AssertionError("on_result called without a job")

    assert executors[kind].run([], on_result) is None


def test_executor_registry_builds_every_kind_from_its_config():
    built = {kind: type(get_executor(cfg, progress=False)).kind for kind, cfg in CONFIGS.items()}
    assert built == {kind: kind for kind in CONFIGS}
    ray = get_executor(RayExecutorConfig(address="10.0.0.1:6379", num_cpus=2, num_gpus=0.5))
    assert (ray.address, ray.num_cpus, ray.num_gpus) == ("10.0.0.1:6379", 2, 0.5)


def test_ray_executor_gives_the_local_predictions(multiclass_project, tmp_path, executors):
    """A whole experiment on the module's Ray session (started by ``executors``)."""
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


def test_ray_executor_reraises_the_task_error(multiclass_project, tmp_path, executors):
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
