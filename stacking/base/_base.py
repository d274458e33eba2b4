"""The loader plug-in contract: one loader per model format, and their registry.

A :class:`ModelLoader` turns a path into a :class:`FrozenModel`: a model whose weights
never change and whose ``predict`` runs compiled inference over large batches.

Contract of a loader (checked for every registered loader by
``tests/test_loaders_conformance.py``):

- **stateless and thread safe**: ``matches`` and ``load`` keep nothing between calls, so
  one loader instance serves every executor thread;
- **ownership**: the caller owns the returned ``FrozenModel`` and drops it when done, so
  that one model at a time is in memory per worker;
- ``load(path, *, output=None, layer=None, custom_objects=None)`` imports the modules
  named in ``custom_objects`` first (custom Keras classes register on import), refuses
  ``layer`` with a :class:`~stacking.errors.BaseModelError` when the format has no layers,
  and leaves a multi-output model's output unselected when ``output`` is None (``inspect``
  shows every output; ``predict`` then asks for ``output:``).

Adding a format is one module with a ``ModelLoader`` subclass and a call to
:func:`register_loader`, imported from ``stacking/base/__init__.py``.
"""

from __future__ import annotations

import abc
import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from stacking.errors import BaseModelError, did_you_mean

KINDS = ("sequential", "functional", "subclassed", "savedmodel", "tflite", "onnx")


class FrozenModel(abc.ABC):
    """A loaded model that only predicts.

    Inputs are described in the model's DECLARED order (``input_names``,
    ``input_shapes``, ``input_dtypes``); ``predict`` takes one array per input in that
    order (see :func:`stacking.base.arrange_inputs` to order arrays by name).
    ``declared_order`` is False when the format keeps names but no order (a Keras model
    taking a dict, a SavedModel signature without a positional endpoint): such a
    multi-input model must be fed by name.
    """

    path: Path
    kind: str
    declared_order: bool = True
    output_index: int | None = None

    @property
    @abc.abstractmethod
    def input_names(self) -> list[str]:
        """Names of the model's inputs, in declared order."""

    @property
    @abc.abstractmethod
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        """Per-input shapes without the batch axis (``None`` where any size fits)."""

    @property
    @abc.abstractmethod
    def input_dtypes(self) -> list[str]:
        """Per-input numpy dtype names (``'float32'``, ``'int32'``, …, ``'string'``)."""

    @property
    @abc.abstractmethod
    def output_names(self) -> list[str]:
        """Names of the model's outputs, in order (``output:`` takes a name or index)."""

    @property
    @abc.abstractmethod
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        """Per-output shapes without the batch axis."""

    @property
    def layer_names(self) -> list[str]:
        """Layers whose output ``layer:`` can embed; empty for formats without layers."""
        return []

    @abc.abstractmethod
    def _predict_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        """The selected output for one batch (arrays already in the model's dtypes)."""

    def _select_if_given(self, output: str | int | None) -> None:
        """At load: pick ``output`` now when given or when there is only one."""
        if output is not None or len(self.output_names) == 1:
            self.select_output(output)

    def select_output(self, output: str | int | None) -> None:
        """Pick the output ``predict`` returns; a multi-output model needs ``output``."""
        self.output_index = pick_output(self.output_names, output, path=self.path)

    def predict(self, inputs: list[np.ndarray], *, batch_size: int) -> np.ndarray:
        """Predict the selected output for ``inputs``, one array per model input in
        declared order, ``batch_size`` rows at a time; 0 rows give a 0-row result."""
        if self.output_index is None:
            self.select_output(None)  # raises the "several outputs" error
        if len(inputs) != len(self.input_names):
            raise BaseModelError(
                f"model {str(self.path)!r} takes {len(self.input_names)} input(s) "
                f"{self.input_names}. Received: {len(inputs)} array(s); give one per input"
            )
        arrays = [as_model_dtype(x, d) for x, d in zip(inputs, self.input_dtypes)]
        n = len(arrays[0])
        if n == 0:  # one placeholder row gives the output's shape and dtype
            row = [placeholder(x.shape[1:], d) for x, d in zip(arrays, self.input_dtypes)]
            return self._predict_batch(row)[:0]
        parts = [
            self._predict_batch([x[start : start + batch_size] for x in arrays])
            for start in range(0, n, batch_size)
        ]
        return np.concatenate(parts, axis=0)

    @property
    def n_params(self) -> int | None:
        """Number of weights (trainable or not) when the format tells, else ``None``."""
        return None

    def flops_per_row(self) -> float | None:
        """Floating-point operations to predict one row when the format tells, else
        ``None``: 2 per multiply-add and 1 per bias addition, as TensorFlow's profiler
        counts them (activations are not counted)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What ``stacking inspect`` prints: kind, inputs, outputs and layers."""
        return {
            "kind": self.kind,
            "inputs": [
                {"name": n, "shape": list(s), "dtype": d}
                for n, s, d in zip(self.input_names, self.input_shapes, self.input_dtypes)
            ],
            "inputs_in_declared_order": self.declared_order,
            "outputs": [
                {"name": n, "shape": list(s)} for n, s in zip(self.output_names, self.output_shapes)
            ],
            "layers": self.layer_names,
        }


class InputTriples(FrozenModel):
    """A frozen model that keeps its inputs as ``(name, shape, dtype)`` triples in declared
    order (Keras, ONNX): the three input descriptions are read from that one list."""

    _inputs: list[tuple[str, tuple[int | None, ...], str]]

    @property
    def input_names(self) -> list[str]:
        return [n for n, _, _ in self._inputs]

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        return [s for _, s, _ in self._inputs]

    @property
    def input_dtypes(self) -> list[str]:
        return [d for _, _, d in self._inputs]


class ModelLoader(abc.ABC):
    """Loads one model format. Stateless and thread safe (see the module docstring)."""

    format: str
    #: How a user recognises the format, for error messages (".keras or .h5 file").
    description: str

    @abc.abstractmethod
    def matches(self, path: Path) -> bool:
        """True when ``path`` is a model of this format."""

    @abc.abstractmethod
    def load(
        self,
        path: Path,
        *,
        output: str | int | None = None,
        layer: str | None = None,
        custom_objects: list[str] | None = None,
    ) -> FrozenModel:
        """Load ``path`` frozen; ``output`` picks one output of a multi-output model,
        ``layer`` an intermediate layer (a backbone's embedding) instead, and
        ``custom_objects`` names modules to import first."""


LOADERS: list[ModelLoader] = []


def register_loader(loader: ModelLoader) -> ModelLoader:
    """Add a loader for a new format; its ``format`` name must be new.

    >>> register_loader(OnnxLoader())
    """
    if any(existing.format == loader.format for existing in LOADERS):
        raise ValueError(f"a loader for format {loader.format!r} is already registered")
    LOADERS.append(loader)
    return loader


def get_loader(path: Path) -> ModelLoader:
    """The registered loader that reads ``path``; a clear error for unknown formats."""
    for loader in LOADERS:
        if loader.matches(path):
            return loader
    formats = ", ".join(loader.description for loader in LOADERS)
    raise BaseModelError(
        f"{str(path)!r} is not a model format tf-stacking reads; use one of: {formats}"
    )


def is_model(path: Path) -> bool:
    return any(loader.matches(path) for loader in LOADERS)


def import_custom_objects(modules: list[str] | None, *, path: Path) -> None:
    """Import the modules that define a model's custom classes, so that classes decorated
    with ``@keras.saving.register_keras_serializable`` are known before loading."""
    for module in modules or []:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise BaseModelError(
                f"model {str(path)!r}: cannot import custom_objects module {module!r} "
                f"({exc}). Received: custom_objects={module!r}; install it or put its "
                "folder on PYTHONPATH"
            ) from exc


def pick_output(names: list[str], output: str | int | None, *, path: Path) -> int:
    """Index of the requested output; a multi-output model needs ``output`` to be set."""
    if output is None:
        if len(names) == 1:
            return 0
        raise_output_error(names, output, path, "has several outputs")
    if isinstance(output, int) and 0 <= output < len(names):
        return output
    if isinstance(output, str) and output in names:
        return names.index(output)
    raise_output_error(names, output, path, "has no such output")
    raise AssertionError  # unreachable


def raise_output_error(names: list[str], output: str | int | None, path: Path, why: str) -> None:
    raise BaseModelError(
        f"model {str(path)!r} {why}. Received: output={output!r}; "
        f"set `output:` to one of {names} (or its index)"
        f"{did_you_mean(output, names) if isinstance(output, str) else ''}"
    )


def natural_key(name: str) -> list:
    """Sort ``output_2`` before ``output_10`` (exported outputs are numbered)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def dtype_name(dtype: Any) -> str:
    """A numpy dtype name for a TF/Keras/numpy dtype; ``'string'`` for text."""
    if isinstance(dtype, str):
        name = dtype
    elif hasattr(dtype, "as_numpy_dtype"):  # a tf.DType
        name = dtype.name
    else:
        name = np.dtype(dtype).name
    if name in ("string", "object") or name.startswith(("bytes", "str")):
        return "string"
    return name


def as_model_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` in the model's input dtype (text as a numpy object array of ``bytes``/``str``)."""
    if dtype == "string":
        return np.asarray(x, dtype=object)
    return np.asarray(x, dtype=dtype)


def placeholder(shape: tuple, dtype: str) -> np.ndarray:
    """One row of zeros (empty strings for text) of a per-row ``shape``; ``None`` -> 1."""
    full = (1, *(1 if d is None else d for d in shape))
    if dtype == "string":
        return np.full(full, b"", dtype=object)
    return np.zeros(full, dtype=dtype)
