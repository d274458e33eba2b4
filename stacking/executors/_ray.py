"""Ray: one task per (model, inputs) job, on a local or remote Ray cluster.

Each task loads its model, predicts and returns arrays; results are handed to
``on_result`` (which caches them) as tasks finish, so a killed run resumes with what had
finished. Workers must see the model files at the same paths as the driver: on a
cluster, put them on a shared filesystem (the cache is written by the driver only).
GPUs are requested per task with ``num_gpus``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from stacking.config import ExecutorConfig
from stacking.errors import ConfigError
from stacking.executors._base import Executor, Job, naming_model, register_executor, run_job


def run_job_in_worker(job: Job) -> list[np.ndarray]:
    """:func:`run_job` in a Ray worker, which outlives the task: free the model's memory
    before the worker takes the next task (see :func:`releasing_models`)."""
    if gc.get_freeze_count() == 0:  # once per worker: TensorFlow's import-time heap
        gc.collect()
        gc.freeze()
    try:
        with naming_model(job):
            return run_job(job)
    finally:
        gc.collect()


class RayExecutorConfig(ExecutorConfig):
    """One Ray task per (model, fold) job, on a local or remote Ray cluster."""

    kind: Literal["ray"] = "ray"
    address: str | None = Field(None, description="Ray cluster; default: start a local one")
    num_cpus: float = Field(1, gt=0, description="CPUs per Ray inference task")
    num_gpus: float = Field(0, ge=0, description="GPUs per Ray inference task")


@register_executor(RayExecutorConfig)
class RayExecutor(Executor):
    """Run each job as a Ray task on ``address`` (``None``: start or join a local Ray)."""

    def __init__(
        self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float = 0
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus

    @classmethod
    def from_config(cls, cfg: RayExecutorConfig, *, progress: bool = True) -> RayExecutor:
        return cls(cfg.address, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(
                "executor.kind: ray needs Ray; install it with `pip install 'tf-stacking[ray]'`"
            ) from exc
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at executor.address={self.address!r}: {exc}"
                ) from exc
        return ray

    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        if not jobs:
            return
        ray = self._connect()
        task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(run_job_in_worker)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    outputs = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    # The task's own error (e.g. a BaseModelError), with its own message:
                    # RayTaskError's text is the whole remote traceback.
                    cause = exc.cause
                    raise (cause if isinstance(cause, Exception) else exc) from None
                on_result(job, outputs)
