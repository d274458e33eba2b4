"""The loader plug-in contract: one loader per model format.

A :class:`ModelLoader` turns a path into a :class:`FrozenModel`: a model whose weights
never change and whose ``predict`` runs compiled inference over large batches. Add a
format by adding one module with a loader and listing it in ``stacking.base.LOADERS``.

Loaders are stateless and thread safe. A ``FrozenModel`` is owned by the caller, which
drops it when done so that one model at a time is in memory.
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np


class FrozenModel(abc.ABC):
    """A loaded model that only predicts."""

    path: Path

    @property
    @abc.abstractmethod
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        """Per-input shapes without the batch axis (``None`` where any size fits)."""

    @property
    @abc.abstractmethod
    def output_names(self) -> list[str]:
        """Names of the model's outputs, in order."""

    @abc.abstractmethod
    def predict(self, inputs: list[np.ndarray], *, batch_size: int) -> np.ndarray:
        """Predict the selected output for ``inputs`` (one array per model input)."""


class ModelLoader(abc.ABC):
    """Loads one model format."""

    format: str

    @abc.abstractmethod
    def matches(self, path: Path) -> bool:
        """True when ``path`` is a model of this format."""

    @abc.abstractmethod
    def load(
        self, path: Path, *, output: str | int | None = None, layer: str | None = None
    ) -> FrozenModel:
        """Load ``path`` frozen; ``output`` picks one output of a multi-output model and
        ``layer`` an intermediate layer (a backbone's embedding) instead."""


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


def raise_output_error(names, output, path, why) -> None:
    from stacking.errors import BaseModelError

    raise BaseModelError(
        f"model {str(path)!r} {why}. Received: output={output!r}; "
        f"set `output:` to one of {names} (or its index)"
    )
