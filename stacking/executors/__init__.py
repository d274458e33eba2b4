"""Executors run inference jobs: in process (default), with prefetching, or on Ray.

A family in Optuna's style: :mod:`._base` states the contract and holds the registry,
each executor is one module that registers itself, and :func:`get_executor` builds the
one an ``executor:`` config section names::

    >>> from stacking.config import LocalExecutorConfig
    >>> type(get_executor(LocalExecutorConfig(), progress=False)).__name__
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
from stacking.executors._local import LocalExecutor
from stacking.executors._prefetch import PrefetchExecutor
from stacking.executors._ray import RayExecutor

make_executor = get_executor  # the name experiment.py used before the registry

__all__ = [
    "Executor",
    "Job",
    "LocalExecutor",
    "PrefetchExecutor",
    "RayExecutor",
    "check_inputs",
    "get_executor",
    "load_job",
    "make_executor",
    "predict_job",
    "register_executor",
    "releasing_models",
    "run_job",
]
