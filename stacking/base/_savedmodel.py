"""TensorFlow SavedModel folders, through their ``serving_default`` signature.

Keras 3 ``load_model`` cannot read a SavedModel; ``tf.saved_model.load`` can, and its
signature functions are already compiled graphs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stacking.base._base import FrozenModel, ModelLoader, pick_output
from stacking.errors import BaseModelError


class SavedModel(FrozenModel):
    def __init__(self, loaded, path: Path, output) -> None:
        self.path = path
        self._loaded = loaded  # keeps the variables alive
        signatures = dict(loaded.signatures)
        if "serving_default" not in signatures:
            raise BaseModelError(
                f"SavedModel {str(path)!r} has no 'serving_default' signature; "
                f"it has {sorted(signatures)}. Re-export it with a serving signature"
            )
        self._fn = signatures["serving_default"]
        _, kwargs = self._fn.structured_input_signature
        self._input_names = sorted(kwargs)
        self._input_specs = [kwargs[name] for name in self._input_names]
        self._outputs = sorted(self._fn.structured_outputs)
        self._output = self._outputs[pick_output(self._outputs, output, path=path)]

    @property
    def input_shapes(self):
        return [tuple(spec.shape[1:]) for spec in self._input_specs]

    @property
    def output_names(self):
        return list(self._outputs)

    def predict(self, inputs, *, batch_size):
        parts = []
        for start in range(0, len(inputs[0]), batch_size):
            feed = {
                name: np.asarray(x[start : start + batch_size], dtype=spec.dtype.as_numpy_dtype)
                for name, spec, x in zip(self._input_names, self._input_specs, inputs)
            }
            parts.append(np.asarray(self._fn(**feed)[self._output]))
        return np.concatenate(parts, axis=0)


class SavedModelLoader(ModelLoader):
    format = "savedmodel"

    def matches(self, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def load(self, path: Path, *, output=None, layer=None) -> SavedModel:
        import tensorflow as tf

        if layer is not None:
            raise BaseModelError(
                f"SavedModel {str(path)!r}: `layer:` needs a Keras model (.keras/.h5); export "
                "the embedding as a signature output and pick it with `output:` instead"
            )
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise BaseModelError(
                f"cannot load SavedModel {str(path)!r}: {str(exc).splitlines()[0]}"
            ) from exc
        return SavedModel(loaded, path, output)
