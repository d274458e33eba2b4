"""Keras 3 ``.keras`` and legacy ``.h5`` files, with a compiled inference function.

``model.predict`` has a large fixed cost per call and leaks memory when called in a
loop; one ``tf.function`` over large batches is many times faster (see
``experiments/benchmarks/``). Models load with ``compile=False`` and ``safe_mode=True``
(the Keras default, kept on purpose: a model file is code, so ``Lambda`` layers stay
refused) and are set non-trainable.

Every model kind is read: ``Sequential``, Functional (also with a model used as a layer,
and with dict inputs, which are then matched by name only) and subclassed models (their
classes come from the modules named in ``custom_objects``; their inputs are described by
the shapes they were built with, and their outputs by one probe call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stacking.base._base import (
    InputTriples,
    ModelLoader,
    dtype_name,
    import_custom_objects,
    placeholder,
    register_loader,
)
from stacking.errors import BaseModelError, first_line


class _DropRetracingNotice(logging.Filter):
    """Models of different architectures (and subclassed models) trace their own function
    once, by design; TF's heuristic counts those first traces across models as
    'retracing' and warns. Drop only that notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_DropRetracingNotice())


def _model_kind(model: Any) -> str:
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        return "sequential"
    return "functional" if isinstance(model, Functional) else "subclassed"


def _shape(shape: Sequence[int | None]) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in shape)


class KerasModel(InputTriples):
    @property
    def n_params(self) -> int | None:
        return int(self._model.count_params()) if self._model.built else None

    def __init__(self, model: Any, path: Path, output: str | int | None) -> None:
        self.path = path
        self.kind = _model_kind(model)
        self._model = model
        self._model.trainable = False
        self._fn: Callable[..., Any] | None = None
        if self.kind == "subclassed":
            self._describe_subclassed()
        else:
            self._describe_graph()
        self._select_if_given(output)

    def _describe_graph(self) -> None:
        # A Sequential model has ``inputs`` but no ``input`` (never called as a layer).
        struct = self._model.input if self.kind == "functional" else self._model.inputs[0]
        if isinstance(struct, dict):  # fed as a dict: names, but no declared order
            self._struct, self.declared_order = "dict", False
            names, tensors = list(struct), list(struct.values())
        else:
            tensors = list(self._model.inputs)
            self._struct = "list" if isinstance(struct, (list, tuple)) else "single"
            names = [t.name for t in tensors]
        self._inputs = [
            (n, _shape(t.shape[1:]), dtype_name(t.dtype)) for n, t in zip(names, tensors)
        ]
        outputs = list(self._model.outputs)
        if self.kind == "sequential":
            out_names = [self._model.layers[-1].name]
        elif isinstance(self._model.output, dict):  # in keras.tree.flatten's (sorted) order
            out_names = sorted(self._model.output)
            outputs = [self._model.output[n] for n in out_names]
        else:
            out_names = list(self._model.output_names)
        self._outputs = [(n, _shape(t.shape[1:])) for n, t in zip(out_names, outputs)]

    def _describe_subclassed(self) -> None:
        import keras

        built = (self._model.get_build_config() or {}).get("input_shape")
        if built is None:
            raise BaseModelError(
                f"subclassed model {str(self.path)!r} was saved unbuilt, so its input shape "
                "is unknown; call it on one batch before saving it"
            )
        dtype = dtype_name(getattr(self._model, "input_dtype", None) or "float32")
        if isinstance(built, dict):
            self._struct, self.declared_order = "dict", False
            shapes = {k: tuple(v)[1:] for k, v in built.items()}
        elif built and isinstance(built[0], (list, tuple)):
            self._struct = "list"
            shapes = {f"input_{i}": tuple(s)[1:] for i, s in enumerate(built)}
        else:
            self._struct = "single"
            shapes = {"input": tuple(built)[1:]}
        self._inputs = [(n, _shape(s), dtype) for n, s in shapes.items()]
        probe = self._pack([placeholder(s, d) for _, s, d in self._inputs])
        out = self._model(probe, training=False)
        if isinstance(out, dict):
            names = sorted(out)  # keras.tree.flatten's order
        elif isinstance(out, (list, tuple)):
            names = [f"output_{i}" for i in range(len(out))]
        else:
            names = ["output_0"]
        flat = keras.tree.flatten(out)
        self._outputs = [(n, _shape(t.shape[1:])) for n, t in zip(names, flat)]

    def _pack(self, arrays: Sequence[np.ndarray]) -> Any:
        if self._struct == "dict":
            return dict(zip(self.input_names, arrays))
        return list(arrays) if self._struct == "list" else arrays[0]

    @property
    def output_names(self) -> list[str]:
        return [n for n, _ in self._outputs]

    @property
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        return [s for _, s in self._outputs]

    @property
    def layer_names(self) -> list[str]:
        if self.kind == "subclassed":
            return []
        return [lyr.name for lyr in self._model.layers if type(lyr).__name__ != "InputLayer"]

    def _compiled(self) -> Callable[..., Any]:
        import keras
        import tensorflow as tf

        if self._fn is None:
            specs = [tf.TensorSpec((None, *s), tf.as_dtype(d)) for _, s, d in self._inputs]
            key = architecture_key(
                self._model, self.kind, self.output_index, self._inputs, self._struct
            )
            if key is not None:  # the fold models of one architecture share one trace
                weights = [tf.convert_to_tensor(v.value) for v in self._model.variables]
                shared = SHARED_FUNCTIONS.get(key, lambda: _stateless_function(self, specs))
                self._fn = lambda *batch: shared(weights, *batch)
            else:
                model, index, pack = self._model, self.output_index, self._pack

                def call(*args: Any) -> Any:
                    return keras.tree.flatten(model(pack(args), training=False))[index]

                self._fn = tf.function(call, input_signature=specs, reduce_retracing=True)
        return self._fn

    def _predict_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self._compiled()(*batch))

    def flops_per_row(self) -> float | None:
        """TensorFlow's profiler over the model's graph for one row, weights folded in;
        ``None`` when an input has an unknown size (text, variable-length sequences)
        or the graph cannot be profiled."""
        if any(None in s for _, s, _ in self._inputs):
            return None
        return _profiled_flops(self._model, self._pack, self._inputs)

    def select_output(self, output: str | int | None) -> None:
        super().select_output(output)
        self._fn = None  # traced for the selected output


def _profiled_flops(model: Any, pack: Callable[..., Any], inputs: list[Any]) -> float | None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler.model_analyzer import profile
    from tensorflow.python.profiler.option_builder import ProfileOptionBuilder

    specs = [tf.TensorSpec((1, *s), tf.as_dtype(d)) for _, s, d in inputs]
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # the profiler's own deprecation notice is not the user's
    try:
        call = tf.function(lambda *args: model(pack(list(args)), training=False))
        graph = convert_variables_to_constants_v2(call.get_concrete_function(*specs)).graph
        options = ProfileOptionBuilder(ProfileOptionBuilder.float_operation())
        stats = profile(graph, options=options.with_empty_output().build())
    except Exception:  # a layer the profiler cannot walk: the format does not tell
        return None
    finally:
        tf_log.setLevel(level)
    return float(stats.total_float_ops)


def _stateless_function(template: KerasModel, specs: list[Any]) -> Callable[..., Any]:
    """A function of (weights, *inputs) traced once for ``template``'s architecture: any
    model of the same architecture runs through it with its own weights as arguments
    (``stateless_call``), so the fold models of a set do not each trace a graph."""
    import keras
    import tensorflow as tf

    model, index, pack = template._model, template.output_index, template._pack
    weight_specs = [tf.TensorSpec(v.shape, tf.as_dtype(v.dtype)) for v in model.variables]
    n_trainable = len(model.trainable_variables)  # 0: a loaded model is set non-trainable

    def call(weights: list[Any], *args: Any) -> Any:
        out, _ = model.stateless_call(
            weights[:n_trainable], weights[n_trainable:], pack(args), training=False
        )
        return keras.tree.flatten(out)[index]

    return tf.function(call, input_signature=[weight_specs, *specs], reduce_retracing=True)


class SharedFunctions:
    """The traced functions shared by models of one architecture, least recently used
    first out (each holds its template model alive). Thread safe: executor threads load
    fold models of one set at the same time."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._fns: OrderedDict[str, Callable[..., Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.traced = 0  # functions built since the last clear(), for tests and benchmarks

    def get(self, key: str, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        with self._lock:
            fn = self._fns.get(key)
            if fn is None:
                fn = self._fns[key] = build()
                self.traced += 1
                while len(self._fns) > self.capacity:
                    self._fns.popitem(last=False)
            self._fns.move_to_end(key)
            return fn

    def tracing_count(self) -> int:
        """Graphs traced by the shared functions still held (one each when nothing
        retraced)."""
        with self._lock:
            fns = list(self._fns.values())
        counts: list[int] = [fn.experimental_get_tracing_count() for fn in fns]  # type: ignore[attr-defined]
        return sum(counts)

    def clear(self) -> None:
        with self._lock:
            self._fns.clear()
            self.traced = 0


SHARED_FUNCTIONS = SharedFunctions()


def _layer_names(config: Any) -> set[str]:
    """The names of the model and of every layer in its configuration (a Sequential
    model's input layer and nested models' layers included)."""
    names: set[str] = set()
    if isinstance(config, dict):
        for key, value in config.items():
            if key == "layers" and isinstance(value, list):
                for layer in value:
                    if isinstance(layer, dict):
                        for named in (layer, layer.get("config")):
                            if isinstance(named, dict) and isinstance(named.get("name"), str):
                                names.add(named["name"])
            names |= _layer_names(value)
    elif isinstance(config, list):
        for value in config:
            names |= _layer_names(value)
    return names


def _canonical(config: Any, layers: set[str], names: dict[str, str]) -> Any:
    """``config`` with layer names replaced by their order of first appearance, only where
    Keras stores a layer's name (``name``) or a reference to one (``keras_history``, a
    model's ``input_layers``/``output_layers``): fold models built in one session are
    named ``dense``, ``dense_1``, ... but have the same architecture. Other names (a
    dtype policy's) are kept as they are."""

    def token(name: Any) -> Any:
        if not isinstance(name, str) or name not in layers:
            return name
        return names.setdefault(name, f"#{len(names)}")

    def refs(value: Any) -> Any:  # [name, node, tensor] or a list of them
        if isinstance(value, list) and value and isinstance(value[0], list):
            return [refs(v) for v in value]
        if isinstance(value, list) and value:
            return [token(value[0]), *value[1:]]
        return value

    if isinstance(config, dict):
        out = {}
        for k, v in config.items():
            if k == "name":
                out[k] = token(v)
            elif k in ("keras_history", "input_layers", "output_layers"):
                out[k] = refs(v)
            else:
                out[k] = _canonical(v, layers, names)
        return out
    if isinstance(config, (list, tuple)):
        return [_canonical(v, layers, names) for v in config]
    return config


def architecture_key(
    model: Any, kind: str, output_index: int | None, inputs: list[Any], struct: str
) -> str | None:
    """A digest that two models share exactly when one traced function computes both:
    the same class, layer configuration (names aside), variable shapes and dtypes,
    selected output and inputs (their names too when they are fed by name). ``None`` (no
    sharing) for subclassed models, whose ``call`` may depend on state their configuration
    does not show."""
    if kind == "subclassed" or output_index is None:
        return None
    try:
        raw = model.get_config()
        config = _canonical(raw, _layer_names(raw) | {model.name}, {})
    except Exception:  # a layer without get_config: trace this model on its own
        return None
    variables = [[list(v.shape), str(v.dtype), bool(v.trainable)] for v in model.variables]
    parts = [type(model).__module__, type(model).__qualname__, config, variables]
    named = struct == "dict"  # fed by name: the names are part of the call
    parts += [output_index, struct, [[n if named else "", list(s), d] for n, s, d in inputs]]
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_error(path: Path, exc: Exception) -> BaseModelError:
    first = first_line(exc)
    hint = ""
    if "locate class" in first or "Unknown" in first:
        hint = (
            "; name the module that defines the model's custom classes with "
            "`custom_objects: my_pkg.layers` (classes decorated with "
            "@keras.saving.register_keras_serializable)"
        )
    if path.suffix.lower() in (".h5", ".hdf5") and (
        "Unknown layer" in first or "Layer count" in first
    ):
        hint += (
            "; a subclassed model cannot be read back from .h5 (Keras writes it but cannot "
            "restore its weights): save it as .keras or export a SavedModel"
        )
    return BaseModelError(f"cannot load Keras model {str(path)!r}: {first}{hint}")


class KerasLoader(ModelLoader):
    format = "keras"
    description = ".keras or .h5 file"
    suffixes = (".keras", ".h5", ".hdf5")

    def matches(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes

    def load(
        self,
        path: Path,
        *,
        output: str | int | None = None,
        layer: str | None = None,
        custom_objects: list[str] | None = None,
    ) -> KerasModel:
        import keras

        import_custom_objects(custom_objects, path=path)
        if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
            # Keras itself reports "File not found" for a file that exists but is damaged.
            raise BaseModelError(
                f"cannot load Keras model {str(path)!r}: the file is not a .keras archive "
                "(damaged, truncated or another format); save the model again with "
                "model.save(PATH.keras)"
            )
        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:
            raise _load_error(path, exc) from exc
        if layer is not None:
            model = self._embedding_model(model, path, layer)
        return KerasModel(model, path, output)

    @staticmethod
    def _embedding_model(model: Any, path: Path, layer: str) -> Any:
        import keras

        if _model_kind(model) == "subclassed":
            raise BaseModelError(
                f"model {str(path)!r} is a subclassed model, whose layers are not reachable "
                f"from its inputs. Received: layer={layer!r}; use a Functional or Sequential "
                "model, or return the embedding as an output and pick it with `output:`"
            )
        names = [lyr.name for lyr in model.layers if type(lyr).__name__ != "InputLayer"]
        if layer not in names:
            raise BaseModelError(
                f"model {str(path)!r} has no layer {layer!r}. Received: layer={layer!r}; "
                f"its layers are {names}"
            )
        try:
            inputs = model.input if _model_kind(model) == "functional" else model.inputs
            return keras.Model(inputs, model.get_layer(layer).output)
        except ValueError as exc:  # e.g. a layer inside a nested sub-model
            raise BaseModelError(
                f"model {str(path)!r}: layer {layer!r} is not reachable from the model's "
                f"inputs ({first_line(exc)}); name a top-level layer"
            ) from exc


register_loader(KerasLoader())
