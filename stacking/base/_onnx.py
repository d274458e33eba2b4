"""ONNX ``.onnx`` files, run by ONNX Runtime (the ``onnx`` extra).

ONNX brings models of other frameworks into the stack as frozen, servable members:
scikit-learn (skl2onnx), LightGBM and XGBoost (onnxmltools), PyTorch (``torch.onnx``).
The graph's inputs are named and declared in order, so they are matched by name like a
Keras model's; the batch axis is whatever the graph says (a symbolic or fixed first axis).

Outputs are the graph's outputs, in graph order. A converted classifier has two: the
predicted ``label`` (integers or strings) and the class probabilities. The stack reads
scores, never labels, so when ``output`` is not given and exactly one output holds
numbers that can be scores (a float tensor, or skl2onnx's ZipMap list of per-row
``{class: probability}`` maps), that one is selected; a ZipMap output is turned into an
``(n, C)`` array with its classes in sorted order, the order of the model's classes
(scikit-learn's ``classes_``), which is also the column order of the same model
converted with ``zipmap=False``.

Only the selected output is computed, and ONNX Runtime's notices (e.g. a converter's
too-narrow declared label shape) are kept off the console; errors still raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stacking.base._base import (
    InputTriples,
    ModelLoader,
    import_custom_objects,
    register_loader,
)
from stacking.errors import BaseModelError, first_line

# ONNX Runtime's element type names -> numpy dtype names
_DTYPES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "string": "string",
    "bool": "bool",
    **{f"{s}int{b}": f"{s}int{b}" for s in ("", "u") for b in (8, 16, 32, 64)},
}
_SCORE_DTYPES = ("float32", "float64", "float16")
_INSTALL = "install it with `pip install 'tf-stacking[onnx]'` (onnxruntime)"


def _onnxruntime(path: Path) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise BaseModelError(
            f"ONNX model {str(path)!r}: reading .onnx files needs ONNX Runtime; {_INSTALL}"
        ) from exc
    return onnxruntime


def _element(type_name: str) -> str:
    """``tensor(float)`` -> ``float32``; ``seq(map(int64,tensor(float)))`` -> ``zipmap``."""
    if type_name.startswith("seq(map("):
        return "zipmap"
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return _DTYPES.get(inner, inner)


def _shape(shape: Sequence[int | str | None] | None) -> tuple[int | None, ...]:
    """A graph shape without its batch axis; symbolic sizes (``'N'``) are ``None``."""
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in list(shape or [])[1:])


class OnnxModel(InputTriples):
    kind = "onnx"

    def __init__(self, session: Any, path: Path, output: str | int | None) -> None:
        self.path = path
        self._session = session  # InferenceSession.run is thread safe
        self._inputs = [(i.name, _shape(i.shape), _element(i.type)) for i in session.get_inputs()]
        unknown = [(n, d) for n, _, d in self._inputs if d not in _DTYPES.values()]
        if unknown:
            raise BaseModelError(
                f"ONNX model {str(path)!r} has inputs of types tf-stacking cannot feed: "
                f"{unknown}; export it with tensor inputs (float, int or string)"
            )
        self._outputs = [
            (o.name, _shape(o.shape) if _element(o.type) != "zipmap" else (None,), _element(o.type))
            for o in session.get_outputs()
        ]
        self._select_if_given(output)

    def _select_if_given(self, output: str | int | None) -> None:
        scores = [n for n, _, d in self._outputs if d in (*_SCORE_DTYPES, "zipmap")]
        if output is None and len(self._outputs) > 1 and len(scores) == 1:
            output = scores[0]  # a classifier's probabilities beside its labels
        super()._select_if_given(output)

    @property
    def output_names(self) -> list[str]:
        return [n for n, _, _ in self._outputs]

    @property
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        return [s for _, s, _ in self._outputs]

    def _predict_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        assert self.output_index is not None  # predict() selects the output first
        feed = {}
        for (name, _, dtype), x in zip(self._inputs, batch):
            if dtype == "string":  # ONNX Runtime takes str objects, not bytes
                x = np.array(
                    [v.decode() if isinstance(v, bytes) else str(v) for v in x.ravel()],
                    dtype=object,
                ).reshape(x.shape)
            feed[name] = x
        name, _, dtype = self._outputs[self.output_index]
        try:
            (out,) = self._session.run([name], feed)
        except Exception as exc:  # onnxruntime's own exception types, not exported
            raise BaseModelError(  # the file's name only: a served model's client reads it
                f"ONNX model {self.path.name!r} failed on a batch of {len(batch[0])} rows: "
                f"{first_line(exc)}"
            ) from exc
        if dtype == "zipmap":  # [{class: p, ...}, ...] per row -> (n, C), classes sorted
            if not out:
                return np.zeros((0, 0), dtype=np.float32)
            classes = sorted(out[0])
            return np.array([[row[c] for c in classes] for row in out], dtype=np.float32)
        return np.asarray(out)


class OnnxLoader(ModelLoader):
    format = "onnx"
    description = ".onnx file (the onnx extra)"

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".onnx"

    def load(
        self,
        path: Path,
        *,
        output: str | int | None = None,
        layer: str | None = None,
        custom_objects: list[str] | None = None,
    ) -> OnnxModel:
        if layer is not None:
            raise BaseModelError(
                f"ONNX model {str(path)!r}: `layer:` needs a Keras model (.keras/.h5). "
                f"Received: layer={layer!r}; export the embedding as a graph output and pick "
                "it with `output:` instead"
            )
        import_custom_objects(custom_objects, path=path)
        ort = _onnxruntime(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: converters' shape notices stay off
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=session_providers(ort.get_available_providers()),
            )
        except Exception as exc:  # InvalidProtobuf, Fail, …: not importable by name
            raise BaseModelError(
                f"cannot load ONNX model {str(path)!r}: {first_line(exc)}; check that the "
                "file is a complete .onnx export"
            ) from exc
        return OnnxModel(session, path, output)


#: Execution providers used when onnxruntime offers them, fastest first. A GPU build
#: (``onnxruntime-gpu``) offers CUDA; the CPU provider is always last, as the fallback.
#: TensorRT is left out on purpose: it compiles an engine per model on first use.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "CPUExecutionProvider")


def session_providers(available: list[str]) -> list[str]:
    """The providers a session asks for: the preferred ones this onnxruntime offers, in
    order, so that nothing pins ONNX members to the CPU when a GPU build is installed."""
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or ["CPUExecutionProvider"]


register_loader(OnnxLoader())
