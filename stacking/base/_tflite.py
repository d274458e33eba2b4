"""LiteRT (TensorFlow Lite) ``.tflite`` flatbuffers.

Read with ``ai_edge_litert`` (the ``litert`` extra) when installed, else with
TensorFlow's deprecated ``tf.lite.Interpreter``. Inputs are fed in the model's input
order; the batch axis is resized to each batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stacking.base._base import FrozenModel, ModelLoader, pick_output
from stacking.errors import BaseModelError


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the installed extras
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteModel(FrozenModel):
    def __init__(self, path: Path, output) -> None:
        self.path = path
        try:
            self._it = _interpreter_class()(model_path=str(path))
        except (ValueError, RuntimeError) as exc:
            raise BaseModelError(
                f"cannot load LiteRT model {str(path)!r}: {str(exc).splitlines()[0]}"
            ) from exc
        self._inputs = sorted(self._it.get_input_details(), key=lambda d: d["index"])
        self._outputs = sorted(self._it.get_output_details(), key=lambda d: d["index"])
        if len(self._outputs) > 1:
            # Tensor order is not the Keras output order and the names are generated
            # (StatefulPartitionedCall:N): no way to pick the intended output reliably.
            raise BaseModelError(
                f"LiteRT model {str(path)!r} has {len(self._outputs)} outputs; convert one "
                "output per .tflite file, or use the .keras model with `output:`"
            )
        quantized = [
            d["name"]
            for d in [*self._inputs, *self._outputs]
            if not np.issubdtype(d["dtype"], np.floating)
        ]
        if quantized:
            raise BaseModelError(
                f"LiteRT model {str(path)!r} has integer (quantized) inputs/outputs "
                f"{quantized}; tf-stacking reads float models. Convert without full-integer "
                "quantization"
            )
        self._output = self._outputs[pick_output(self.output_names, output, path=path)]

    @property
    def input_shapes(self):
        return [
            tuple(None if d < 0 else int(d) for d in spec["shape_signature"][1:])
            for spec in self._inputs
        ]

    @property
    def output_names(self):
        return [spec["name"] for spec in self._outputs]

    def predict(self, inputs, *, batch_size):
        parts = []
        for start in range(0, len(inputs[0]), batch_size):
            batch = [x[start : start + batch_size] for x in inputs]
            for spec, x in zip(self._inputs, batch):
                self._it.resize_tensor_input(spec["index"], list(x.shape))
            self._it.allocate_tensors()
            for spec, x in zip(self._inputs, batch):
                self._it.set_tensor(spec["index"], np.ascontiguousarray(x, dtype=spec["dtype"]))
            self._it.invoke()
            parts.append(np.array(self._it.get_tensor(self._output["index"])))
        return np.concatenate(parts, axis=0)


class TFLiteLoader(ModelLoader):
    format = "tflite"

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".tflite"

    def load(self, path: Path, *, output=None, layer=None) -> TFLiteModel:
        if layer is not None:
            raise BaseModelError(
                f"LiteRT model {str(path)!r}: `layer:` needs a Keras model (.keras/.h5)"
            )
        return TFLiteModel(path, output)
