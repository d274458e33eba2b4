"""LiteRT (TensorFlow Lite) ``.tflite`` flatbuffers.

Read with ``ai_edge_litert`` (the ``litert`` extra) when installed, else with
TensorFlow's deprecated ``tf.lite.Interpreter``. Names come from the model's signature
(the converter keeps a Keras model's input names, and its outputs as ``output_0`` …, or
a dict output's keys), mapped to tensors by index: the tensor order of outputs is NOT
the Keras order, so an output is always picked through its signature name. Inputs are in
tensor-index order, which is the converted model's declared order. The batch axis is
resized to each batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stacking.base._base import (
    FrozenModel,
    ModelLoader,
    dtype_name,
    import_custom_objects,
    natural_key,
    register_loader,
)
from stacking.errors import BaseModelError, first_line


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - depends on the installed extras
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def _named(details: list[dict], by_name: dict[str, dict] | None) -> list[tuple[str, dict]]:
    """(name, detail) pairs: signature names when the model has a signature."""
    if by_name is None:
        return [(d["name"], d) for d in details]
    index = {d["index"]: d for d in details}
    return [(name, index[d["index"]]) for name, d in by_name.items()]


class TFLiteModel(FrozenModel):
    kind = "tflite"

    def __init__(self, path: Path, output: str | int | None) -> None:
        self.path = path
        try:
            self._it = _interpreter_class()(model_path=str(path))
        except (ValueError, RuntimeError) as exc:
            raise BaseModelError(
                f"cannot load LiteRT model {str(path)!r}: {first_line(exc)}"
            ) from exc
        signatures = self._it.get_signature_list()
        ins = outs = None
        if len(signatures) == 1:
            runner = self._it.get_signature_runner(next(iter(signatures)))
            ins, outs = runner.get_input_details(), runner.get_output_details()
        inputs = _named(self._it.get_input_details(), ins)
        self._inputs = sorted(inputs, key=lambda item: item[1]["index"])
        outputs = _named(self._it.get_output_details(), outs)
        self._outputs = sorted(outputs, key=lambda item: natural_key(item[0]))
        if ins is None:  # tensor names only: keep the tensor order
            self._outputs = sorted(outputs, key=lambda item: item[1]["index"])
        quantized = [n for n, d in [*self._inputs, *self._outputs] if d["quantization"][0] != 0]
        if quantized:
            raise BaseModelError(
                f"LiteRT model {str(path)!r} has quantized inputs/outputs {quantized}; "
                "tf-stacking reads float models. Convert without full-integer quantization"
            )
        self._select_if_given(output)

    @property
    def input_names(self) -> list[str]:
        return [n for n, _ in self._inputs]

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        return [
            tuple(None if d < 0 else int(d) for d in spec["shape_signature"][1:])
            for _, spec in self._inputs
        ]

    @property
    def input_dtypes(self) -> list[str]:
        return [dtype_name(spec["dtype"]) for _, spec in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self._outputs]

    @property
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        return [
            tuple(None if d < 0 else int(d) for d in spec["shape_signature"][1:])
            for _, spec in self._outputs
        ]

    def _predict_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        assert self.output_index is not None  # predict() selects the output first
        for (_, spec), x in zip(self._inputs, batch):
            self._it.resize_tensor_input(spec["index"], list(x.shape))
        self._it.allocate_tensors()
        for (_, spec), x in zip(self._inputs, batch):
            value = x if x.dtype == object else np.ascontiguousarray(x, dtype=spec["dtype"])
            self._it.set_tensor(spec["index"], value)
        self._it.invoke()
        return np.array(self._it.get_tensor(self._outputs[self.output_index][1]["index"]))


class TFLiteLoader(ModelLoader):
    format = "tflite"
    description = ".tflite file"

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".tflite"

    def load(
        self,
        path: Path,
        *,
        output: str | int | None = None,
        layer: str | None = None,
        custom_objects: list[str] | None = None,
    ) -> TFLiteModel:
        if layer is not None:
            raise BaseModelError(
                f"LiteRT model {str(path)!r}: `layer:` needs a Keras model (.keras/.h5). "
                f"Received: layer={layer!r}; convert the embedding as an output and pick it "
                "with `output:` instead"
            )
        import_custom_objects(custom_objects, path=path)
        return TFLiteModel(path, output)


register_loader(TFLiteLoader())
