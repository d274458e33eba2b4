"""Executors run inference jobs: in process (default) or on a Ray cluster."""

from __future__ import annotations

from stacking.executors._base import Executor, Job, check_inputs, run_job
from stacking.executors._local import LocalExecutor

__all__ = ["Executor", "Job", "LocalExecutor", "check_inputs", "make_executor", "run_job"]


def make_executor(cfg, *, progress: bool = True) -> Executor:
    """The executor a :class:`~stacking.config.ExecutorConfig` asks for."""
    if cfg.kind == "local":
        return LocalExecutor(progress=progress)
    if cfg.kind == "ray":
        from stacking.executors._ray import RayExecutor

        return RayExecutor(cfg.address, num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
    raise AssertionError(f"config validation admits no executor {cfg.kind!r}")
