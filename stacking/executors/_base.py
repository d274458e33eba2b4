"""The executor plug-in contract: where inference jobs run.

A :class:`Job` loads one model and predicts one or more input sets with it, so each model
is loaded once. An :class:`Executor` runs a list of jobs. Each implementation is one
module holding its config class (an :class:`~stacking.config.ExecutorConfig` subclass
with ``kind: Literal["name"]`` and its keys) and its class, registered together with
``@register_executor(ItsConfig)``; :func:`get_executor` builds it from an ``executor:``
section. Every implementation keeps this contract, checked for every registered kind by
``tests/test_executors_conformance.py``:

- ``run(jobs, on_result)`` calls ``on_result(job, outputs)`` exactly once per finished
  job, always from the calling thread (the engine caches there, so a killed run resumes
  with what had finished). In-process executors finish jobs in list order; Ray in the
  order tasks complete.
- The first failing job's error propagates from ``run``, as the
  :class:`~stacking.errors.StackingError` subclass it was, naming the base model; jobs
  delivered before it stay delivered. An empty job list does nothing (no model, no
  cluster).
- Outputs equal those of :func:`run_job` (the reference implementation) for every job.
- A model is dropped once predicted, and the memory it held is given back before the
  executor returns (:func:`releasing_models`): no model outlives its job, and RSS stays
  flat over any number of jobs. At most ``models_in_memory`` models are loaded at once.
"""

from __future__ import annotations

import abc
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from stacking.config import BaseModelSpec, ExecutorConfig
from stacking.errors import ConfigError
from stacking.quiet import is_terminal

if TYPE_CHECKING:
    from stacking.base import FrozenModel


@dataclass
class Job:
    """Predict each entry of ``inputs`` (a list of arrays per model input) with one model
    file, ``path``, of base model ``model``, loaded and fed as its ``spec`` says (output,
    embedding layer, custom objects, input names). Pickled as it is for Ray workers."""

    model: str
    spec: BaseModelSpec
    path: Path
    inputs: list[list]  # per input set, one view (stacking.views) or array per model input
    keys: list[str]
    batch_size: int = 4096
    label: str = ""


def run_job(job: Job) -> list[np.ndarray]:
    """Load the job's model, arrange each input set into the model's declared input order
    (by name when the spec's ``input`` names them), check shapes and dtypes before any
    prediction, predict every input set batch by batch, drop the model."""
    model = load_job(job)
    try:
        return predict_job(model, job)
    finally:
        del model


class Executor(abc.ABC):
    """Runs inference jobs; see the module docstring for the contract.

    :func:`register_executor` sets ``kind`` (the config's ``executor.kind``); a subclass
    builds itself from its config section in :meth:`from_config`.
    """

    kind: ClassVar[str] = ""
    models_in_memory: ClassVar[int] = 1

    @classmethod
    def from_config(cls, cfg: Any, *, progress: bool = True) -> Executor:
        """This executor configured by its ``executor:`` section (``cfg.kind == kind``)."""
        return cls()

    @abc.abstractmethod
    def run(self, jobs: list[Job], on_result: Callable[[Job, list[np.ndarray]], None]) -> None:
        """Run every job; call ``on_result`` for each as it finishes."""


E = TypeVar("E", bound=type[Executor])


def register_executor(config: type[ExecutorConfig]) -> Callable[[E], E]:
    """Class decorator: make the class the executor of ``executor: {kind: ...}``, the kind
    and keys of ``config`` (its module's :class:`~stacking.config.ExecutorConfig`)::

        class InlineConfig(ExecutorConfig):
            kind: Literal["inline"] = "inline"

        @register_executor(InlineConfig)
        class InlineExecutor(Executor): ...
    """

    def register(cls: E) -> E:
        ExecutorConfig.register(config, cls)
        cls.kind = config.kind_name()
        return cls

    return register


def get_executor(cfg: ExecutorConfig, *, progress: bool = True) -> Executor:
    """The executor an ``executor:`` config section (its kind and keys) asks for."""
    implementation = type(cfg).implementation
    if not (isinstance(implementation, type) and issubclass(implementation, Executor)):
        raise ConfigError(
            f"no executor is registered for executor.kind={cfg.kind!r}; "
            f"use one of {sorted(ExecutorConfig.registered())}"
        )
    return implementation.from_config(cfg, progress=progress)


def load_job(job: Job) -> FrozenModel:
    """Load the job's model: the half of :func:`run_job` a prefetcher runs ahead."""
    from stacking.base import load_base_model

    with naming_model(job):
        spec = job.spec
        return load_base_model(
            job.path,
            output=spec.output,
            layer=spec.layer,
            custom_objects=spec.custom_objects or None,
        )


def predict_job(model: FrozenModel, job: Job) -> list[np.ndarray]:
    """Predict every input set of ``job`` with its loaded ``model``: :func:`run_job`'s
    other half, step for step (the conformance test checks both give equal outputs)."""
    from stacking.base import arrange_inputs
    from stacking.views import predict_in_batches

    with naming_model(job):
        arranged = [
            arrange_inputs(model, x, job.spec.input_names, model_name=job.model) for x in job.inputs
        ]
        check_inputs(model, arranged[0], model=job.model, path=job.path)
        return [predict_in_batches(model, x, batch_size=job.batch_size) for x in arranged]


@contextmanager
def naming_model(job: Job) -> Iterator[None]:
    """Re-raise a user error that does not name the job's base model with its name.

    Loaders name the file (``cannot load Keras model '/m/fold_1.keras'``), not the
    config's base model; the user fixes the entry they wrote, so the error names both.
    """
    from stacking.errors import StackingError
    from stacking.images import RowDataError

    try:
        yield
    except StackingError as exc:
        if repr(job.model) in str(exc) or isinstance(exc, RowDataError):
            raise
        raise type(exc)(f"base model {job.model!r}: {exc}") from exc


@contextmanager
def releasing_models() -> Iterator[Callable[[], int]]:
    """Yield ``release()``: give back the memory of models dropped since the last call.

    A Keras model is a web of reference cycles (layers, nodes, traced functions), so
    dropping it frees nothing until the cyclic garbage collector runs, and Python's own
    schedule runs a full collection rarely: RSS grows by the model's weights per job.
    A full ``gc.collect()`` after each job frees it but walks every object TensorFlow
    created at import (~400,000, ~0.15 s per call). So the heap that exists before the
    run is frozen (:func:`gc.freeze`) for the run's length, and ``release()`` collects
    only what was allocated since: the dropped models (~5 ms). ``keras.backend.
    clear_session()`` is not needed and does not help: it frees no cycle, and it resets
    process-wide Keras state (``experiments/benchmarks/bench_release.py`` measures all
    three).
    """
    was_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    try:
        yield gc.collect
    finally:
        if not was_frozen:  # a caller that froze its own heap keeps it frozen
            gc.unfreeze()


def progress_bar(jobs: list[Job], progress: bool) -> Any:
    """A tqdm bar over ``jobs``: off when ``progress`` is false, when there is no job, and
    when stderr is not a terminal (a log or a notebook would get every frame as a line;
    the stage line after it says what was done). tqdm.auto is not imported: in a notebook
    without ipywidgets, importing it alone warns (``TqdmWarning: IProgress not found``)."""
    from tqdm.std import tqdm

    shown = progress and bool(jobs) and is_terminal(sys.stderr)
    return tqdm(jobs, desc="inference", unit="model", disable=not shown)


def check_inputs(frozen: FrozenModel, inputs: list[np.ndarray], *, model: str, path: Path) -> None:
    """Refuse input arrays whose shapes or dtypes differ from the loaded model's, naming
    both. ``inputs`` are in the model's declared order."""
    from stacking.base import check_input_dtypes
    from stacking.errors import BaseModelError

    expected = frozen.input_shapes
    got = [tuple(a.shape[1:]) for a in inputs]
    fits = len(expected) == len(got) and all(
        len(e) == len(g) and all(d is None or d == h for d, h in zip(e, g))
        for e, g in zip(expected, got)
    )
    if not fits:
        shown = [tuple(d for d in e) for e in expected]
        raise BaseModelError(
            f"base model {model!r} ({path.name}) expects input shape(s) {shown} "
            f"{frozen.input_names} but its input view gives {got}; set the view's `shape:` "
            "(e.g. [8, 8, 1]) or `columns:` to match the model"
        )
    check_input_dtypes(frozen, inputs, model_name=model)
