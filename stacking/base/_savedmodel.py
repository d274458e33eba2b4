"""TensorFlow SavedModel folders, through their ``serving_default`` signature.

Keras 3 ``load_model`` cannot read a SavedModel; ``tf.saved_model.load`` can, and its
signature functions are already compiled graphs. A signature takes keyword arguments,
so the inputs' DECLARED order is recovered separately (feeding them in sorted-name order
silently swaps ``zeta`` and ``alpha``):

a Keras export (``model.export``) keeps a ``serve`` endpoint, and a ``tf.Module`` its
``__call__``, whose positional input specs are in the declared order; they are matched to
the signature's names (which can differ: a subclassed model's ``args_0_0`` is the
signature's ``args_0``). Without such a function the signature's names have no order (a
protobuf map), so a multi-input model must be fed by name (``declared_order`` False).

Outputs are the signature's named outputs; a Keras export names them ``output_0`` …,
sorted by number.
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


def _positional_order(loaded: Any, specs: dict[str, Any]) -> list[str] | None:
    """Signature input names in the positional order of a saved function that takes the
    same inputs: Keras' ``serve`` endpoint, or a ``tf.Module``'s ``__call__``."""
    for attribute in ("serve", "__call__"):
        order = _order_of(getattr(loaded, attribute, None), specs)
        if order is not None:
            return order
    return None


def _order_of(function: Any, specs: dict[str, Any]) -> list[str] | None:
    import tensorflow as tf

    functions = getattr(function, "concrete_functions", None) or []
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
            # a subclassed model's list input: serve names args_0_0, the signature args_0
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

    @property
    def n_params(self) -> int | None:
        """The size of the variables the SavedModel restored (``None`` if it tracks none)."""
        variables = getattr(self._loaded, "variables", None)
        if not variables:
            return None
        return int(sum(np.prod(v.shape) for v in variables))

    def __init__(self, loaded: Any, path: Path, output: str | int | None) -> None:
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
        order = _positional_order(loaded, kwargs)
        # Without a positional function the signature's names are known but their order
        # is not (a protobuf map): a multi-input model must then be fed by name.
        self.declared_order = order is not None or len(kwargs) < 2
        self._names = order or sorted(kwargs)
        self._specs = [kwargs[n] for n in self._names]
        outputs = self._fn.structured_outputs
        self._outputs = sorted(outputs, key=natural_key)
        self._output_specs = [outputs[n] for n in self._outputs]
        self._select_if_given(output)

    @property
    def input_names(self) -> list[str]:
        return list(self._names)

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        return [tuple(spec.shape[1:]) for spec in self._specs]

    @property
    def input_dtypes(self) -> list[str]:
        return [dtype_name(spec.dtype) for spec in self._specs]

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        return [tuple(spec.shape[1:]) for spec in self._output_specs]

    def _predict_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        assert self.output_index is not None  # predict() selects the output first
        feed = dict(zip(self._names, batch))
        return np.asarray(self._fn(**feed)[self._outputs[self.output_index]])


class SavedModelLoader(ModelLoader):
    format = "savedmodel"
    description = "SavedModel folder (with saved_model.pb)"

    def matches(self, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def load(
        self,
        path: Path,
        *,
        output: str | int | None = None,
        layer: str | None = None,
        custom_objects: list[str] | None = None,
    ) -> SavedModel:
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
                f"cannot load SavedModel {str(path)!r}: {first_line(exc)}"
            ) from exc
        return SavedModel(loaded, path, output)


register_loader(SavedModelLoader())
