"""TensorFlow SavedModel folders, through their ``serving_default`` signature.

Keras 3 ``load_model`` cannot read a SavedModel; ``tf.saved_model.load`` can, and its
signature functions are already compiled graphs. A signature takes keyword arguments,
so the inputs' DECLARED order is recovered separately (feeding them in sorted-name order
silently swaps ``zeta`` and ``alpha``):

1. a Keras export (``model.export``) keeps a ``serve`` endpoint whose positional input
   specs are in the model's order; they are matched to the signature's names (the names
   can differ: a subclassed model's ``args_0_0`` is the signature's ``args_0``);
2. otherwise the signature's ``structured_input_signature`` keeps its function's
   argument order (a ``tf.Module`` with ``input_signature=[zeta, alpha]``).

Outputs are the signature's named outputs; a Keras export names them ``output_0`` …,
sorted by number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stacking.base._base import (
    FrozenModel,
    ModelLoader,
    dtype_name,
    import_custom_objects,
    natural_key,
    register_loader,
)
from stacking.errors import BaseModelError


def _serve_order(loaded, specs: dict) -> list[str] | None:
    """Signature input names in the order of the Keras ``serve`` endpoint, if any."""
    import tensorflow as tf

    serve = getattr(loaded, "serve", None)
    functions = getattr(serve, "concrete_functions", None) or []
    if len(functions) != 1:
        return None
    args, kwargs = functions[0].structured_input_signature
    if kwargs or any(isinstance(a, dict) for a in args):
        return None  # a dict input: names only, no order
    flat = [s for s in tf.nest.flatten(args) if isinstance(s, tf.TensorSpec)]
    if len(flat) != len(specs):
        return None
    order, left = [], dict(specs)
    for spec in flat:
        name = spec.name if spec.name in left else None
        if name is None and spec.name and spec.name.endswith("_0"):
            name = spec.name[:-2] if spec.name[:-2] in left else None
        if name is None:  # the only remaining spec of this shape and dtype
            same = [
                n
                for n, s in left.items()
                if s.dtype == spec.dtype and s.shape.as_list() == spec.shape.as_list()
            ]
            name = same[0] if len(same) == 1 else None
        if name is None:
            return None
        order.append(name)
        del left[name]
    return order


class SavedModel(FrozenModel):
    kind = "savedmodel"

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
        order = _serve_order(loaded, kwargs)
        if order is None and getattr(loaded, "serve", None) is not None and len(kwargs) > 1:
            self.declared_order = False  # a Keras export of a dict-input model
        self._names = order or list(kwargs)
        self._specs = [kwargs[n] for n in self._names]
        outputs = self._fn.structured_outputs
        self._outputs = sorted(outputs, key=natural_key)
        self._output_specs = [outputs[n] for n in self._outputs]
        self._select_if_given(output)

    @property
    def input_names(self):
        return list(self._names)

    @property
    def input_shapes(self):
        return [tuple(spec.shape[1:]) for spec in self._specs]

    @property
    def input_dtypes(self):
        return [dtype_name(spec.dtype) for spec in self._specs]

    @property
    def output_names(self):
        return list(self._outputs)

    @property
    def output_shapes(self):
        return [tuple(spec.shape[1:]) for spec in self._output_specs]

    def _predict_batch(self, batch):
        feed = dict(zip(self._names, batch))
        return np.asarray(self._fn(**feed)[self._outputs[self.output_index]])


class SavedModelLoader(ModelLoader):
    format = "savedmodel"
    description = "SavedModel folder (with saved_model.pb)"

    def matches(self, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def load(self, path: Path, *, output=None, layer=None, custom_objects=None) -> SavedModel:
        import tensorflow as tf

        if layer is not None:
            raise BaseModelError(
                f"SavedModel {str(path)!r}: `layer:` needs a Keras model (.keras/.h5). "
                f"Received: layer={layer!r}; export the embedding as a signature output and "
                "pick it with `output:` instead"
            )
        import_custom_objects(custom_objects, path=path)  # e.g. custom TF ops
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise BaseModelError(
                f"cannot load SavedModel {str(path)!r}: {str(exc).splitlines()[0]}"
            ) from exc
        return SavedModel(loaded, path, output)


register_loader(SavedModelLoader())
