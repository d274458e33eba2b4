"""Keras 3 ``.keras`` and legacy ``.h5`` files, with a compiled inference function.

``model.predict`` has a large fixed cost per call and leaks memory when called in a
loop; one ``tf.function`` over large batches is many times faster (see
``experiments/benchmarks/``). Models load with ``compile=False`` and ``safe_mode=True``
(the Keras default, kept on purpose: a model file is code) and are set non-trainable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stacking.base._base import FrozenModel, ModelLoader, pick_output
from stacking.errors import BaseModelError


class _DropRetracingNotice(logging.Filter):
    """Each frozen model traces its own function once, by design; TF's heuristic counts
    those first traces across models as 'retracing' and warns. Drop only that notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_DropRetracingNotice())


class KerasModel(FrozenModel):
    def __init__(self, model, path: Path, output: str | int | None) -> None:
        import tensorflow as tf

        self.path = path
        self._model = model
        self._model.trainable = False
        self._output = pick_output(self.output_names, output, path=path)
        n_outputs = len(self.output_names)
        index = self._output

        def call(*args):
            out = model(list(args) if len(args) > 1 else args[0], training=False)
            return out[index] if n_outputs > 1 else out

        specs = [tf.TensorSpec((None, *s), tf.float32) for s in self.input_shapes]
        self._fn = tf.function(call, input_signature=specs, reduce_retracing=True)

    @property
    def input_shapes(self):
        return [tuple(t.shape[1:]) for t in self._model.inputs]

    @property
    def output_names(self):
        return list(self._model.output_names)

    def predict(self, inputs, *, batch_size):
        n = len(inputs[0])
        parts = []
        for start in range(0, n, batch_size):
            batch = [np.asarray(x[start : start + batch_size], dtype=np.float32) for x in inputs]
            parts.append(np.asarray(self._fn(*batch)))
        if not parts:
            out = np.asarray(self._fn(*[np.asarray(x, dtype=np.float32) for x in inputs]))
            return out[:0]
        return np.concatenate(parts, axis=0)


class KerasLoader(ModelLoader):
    format = "keras"
    suffixes = (".keras", ".h5", ".hdf5")

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def load(self, path: Path, *, output=None, layer=None) -> KerasModel:
        import keras

        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise BaseModelError(
                f"cannot load Keras model {str(path)!r}: {str(exc).splitlines()[0]}"
            ) from exc
        if layer is not None:
            names = [lyr.name for lyr in model.layers]
            if layer not in names:
                raise BaseModelError(
                    f"model {str(path)!r} has no layer {layer!r}. Received: layer={layer!r}; "
                    f"its layers are {names}"
                )
            try:
                model = keras.Model(model.inputs, model.get_layer(layer).output)
            except ValueError as exc:  # e.g. a layer inside a nested sub-model
                raise BaseModelError(
                    f"model {str(path)!r}: layer {layer!r} is not reachable from the model's "
                    f"inputs ({str(exc).splitlines()[0]}); name a top-level layer"
                ) from exc
        return KerasModel(model, path, output)
