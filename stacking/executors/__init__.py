"""Executors run inference jobs: in process (default), with prefetching, or on Ray.

A family in Optuna's style: :mod:`._base` states the contract, each executor is one module
holding its config class and its class, registered together with
:func:`register_executor`, and :func:`get_executor` builds the one an ``executor:`` config
section names::

    >>> from stacking.config import ExecutorConfig
    >>> type(get_executor(ExecutorConfig.build({"kind": "local"}), progress=False)).__name__
    'LocalExecutor'
"""

from __future__ import annotations

from stacking.executors._base import (
    Executor,
    Job,
    check_inputs,
    get_executor,
    load_job,
    predict_job,
    register_executor,
    releasing_models,
    run_job,
)
from stacking.executors._local import LocalExecutor, LocalExecutorConfig
from stacking.executors._prefetch import PrefetchExecutor, PrefetchExecutorConfig
from stacking.executors._ray import RayExecutor, RayExecutorConfig

__all__ = [
    "Executor",
    "Job",
    "LocalExecutor",
    "LocalExecutorConfig",
    "PrefetchExecutor",
    "PrefetchExecutorConfig",
    "RayExecutor",
    "RayExecutorConfig",
    "check_inputs",
    "get_executor",
    "load_job",
    "predict_job",
    "register_executor",
    "releasing_models",
    "run_job",
]
