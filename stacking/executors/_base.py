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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stacking.base import FrozenModel


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
    # The model input each array of an input set feeds (config `input: {name: view}`);
    # None: the arrays are in the model's declared order.
    input_names: list[str] | None = None
    custom_objects: list[str] | None = None  # modules defining custom Keras classes


def run_job(job: Job) -> list[np.ndarray]:
    """Load the job's model, arrange each input set into the model's declared input order
    (by name when ``job.input_names`` is set), check shapes and dtypes before any
    prediction, predict every input set batch by batch, drop the model."""
    from stacking.base import arrange_inputs, load_base_model
    from stacking.views import predict_in_batches

    model = load_base_model(
        job.path, output=job.output, layer=job.layer, custom_objects=job.custom_objects
    )
    try:
        arranged = [
            arrange_inputs(model, x, job.input_names, model_name=job.model) for x in job.inputs
        ]
        check_inputs(model, arranged[0], model=job.model, path=job.path)
        return [predict_in_batches(model, x, batch_size=job.batch_size) for x in arranged]
    finally:
        del model


class Executor(abc.ABC):
    @abc.abstractmethod
    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        """Run every job; call ``on_result`` for each as it finishes."""


def check_inputs(
    frozen: FrozenModel | list[tuple], inputs: list[np.ndarray], *, model: str, path: Path
) -> None:
    """Refuse input arrays whose shapes or dtypes differ from the model's, naming both.

    ``frozen`` is the loaded :class:`~stacking.base.FrozenModel` (or, as before, the list
    of its input shapes: then only shapes are checked). ``inputs`` are in its declared
    order.
    """
    from stacking.base import check_input_dtypes
    from stacking.errors import BaseModelError

    expected = frozen if isinstance(frozen, list) else frozen.input_shapes
    got = [tuple(a.shape[1:]) for a in inputs]
    fits = len(expected) == len(got) and all(
        len(e) == len(g) and all(d is None or d == h for d, h in zip(e, g))
        for e, g in zip(expected, got)
    )
    if not fits:
        shown = [tuple(d for d in e) for e in expected]
        names = "" if isinstance(frozen, list) else f" {frozen.input_names}"
        raise BaseModelError(
            f"base model {model!r} ({path.name}) expects input shape(s) {shown}{names} "
            f"but its input view gives {got}; set the view's `shape:` (e.g. [8, 8, 1]) or "
            f"`columns:` to match the model"
        )
    if not isinstance(frozen, list):
        check_input_dtypes(frozen, inputs, model_name=model)
