"""The executor plug-in contract: where inference jobs run.

A :class:`Job` loads one model and predicts one or more input sets with it, so each model
is loaded once and only one model is in memory at a time per worker. ``run`` calls
``on_result(job, outputs)`` as each job finishes (the engine caches there, so a killed
run resumes), in any order, from the calling thread.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Job:
    """Predict each entry of ``inputs`` (a list of arrays per model input) with one model."""

    model: str
    path: Path
    output: str | int | None
    inputs: list[list]  # per input set, one view (stacking.views) or array per model input
    keys: list[str]
    batch_size: int = 4096
    label: str = ""
    layer: str | None = None  # a backbone's embedding layer


def run_job(job: Job) -> list[np.ndarray]:
    """Load the job's model, predict every input set, drop the model."""
    from stacking.base import load_base_model
    from stacking.views import predict_in_batches

    model = load_base_model(job.path, output=job.output, layer=job.layer)
    try:
        check_inputs(model.input_shapes, job.inputs[0], model=job.model, path=job.path)
        return [predict_in_batches(model, x, batch_size=job.batch_size) for x in job.inputs]
    finally:
        del model


class Executor(abc.ABC):
    @abc.abstractmethod
    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        """Run every job; call ``on_result`` for each as it finishes."""


def check_inputs(
    expected: list[tuple], inputs: list[np.ndarray], *, model: str, path: Path
) -> None:
    """Refuse input arrays whose shapes differ from the model's, naming both."""
    from stacking.errors import BaseModelError

    got = [tuple(a.shape[1:]) for a in inputs]
    fits = len(expected) == len(got) and all(
        len(e) == len(g) and all(d is None or d == h for d, h in zip(e, g))
        for e, g in zip(expected, got)
    )
    if not fits:
        shown = [tuple(d for d in e) for e in expected]
        raise BaseModelError(
            f"base model {model!r} ({path.name}) expects input shape(s) {shown} "
            f"but its input view gives {got}; set the view's `shape:` (e.g. [8, 8, 1]) or "
            f"`columns:` to match the model"
        )
