"""Matching input arrays to a model's inputs: by name where given, else by position.

A SavedModel's signature and a multi-input Keras model name their inputs; feeding them in
any other order than the model declares gives wrong numbers without an error. So arrays
are arranged into the model's declared order by name when the config names them
(``input: {zeta: z_view, alpha: a_view}``), and by position only when the model has a
declared order. Dtypes are checked before any prediction.
"""

from __future__ import annotations

import numpy as np

from stacking.base._base import FrozenModel
from stacking.errors import BaseModelError


def arrange_inputs(
    model: FrozenModel,
    arrays: list[np.ndarray],
    names: list[str] | None,
    *,
    model_name: str,
) -> list[np.ndarray]:
    """``arrays`` in ``model``'s declared input order.

    ``names[i]`` is the model input that ``arrays[i]`` feeds; ``names=None`` means the
    arrays are already in declared order, which a multi-input model without a declared
    order (``model.declared_order`` False) refuses.

    >>> arrange_inputs(model, [a, z], ["alpha", "zeta"], model_name="cnn")  # -> [z, a]
    """
    expected = model.input_names
    where = f"base model {model_name!r} ({model.path.name})"
    if names is None:
        if len(arrays) != len(expected):
            raise BaseModelError(
                f"{where} takes {len(expected)} input(s) {expected}. Received: "
                f"{len(arrays)} input view(s); give one view per input, e.g. "
                f"input: {{{expected[0]}: VIEW, ...}}"
            )
        if len(expected) > 1 and not model.declared_order:
            raise BaseModelError(
                f"{where} names its inputs {expected} but declares no order for them, so a "
                f"list of views is ambiguous. Received: a list of {len(arrays)} views; map "
                f"them by name: input: {{{expected[0]}: VIEW, {expected[1]}: VIEW}}"
            )
        return list(arrays)
    if len(names) != len(arrays):
        raise ValueError(f"{len(names)} names for {len(arrays)} arrays")  # caller's bug
    unknown = [n for n in names if n not in expected]
    missing = [n for n in expected if n not in names]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if unknown or missing or doubled:
        problems = ", ".join(
            f"{label} {items}"
            for label, items in (("unknown", unknown), ("missing", missing), ("twice", doubled))
            if items
        )
        raise BaseModelError(
            f"{where} has inputs {expected}. Received: input names {names} ({problems}); "
            f"map each of the model's inputs to one view"
        )
    return [arrays[names.index(n)] for n in expected]


def _kind(array: object) -> str:
    """The numpy dtype kind of an array or of a view (whose ``dtype`` is a name)."""
    dtype = getattr(array, "dtype", None)
    if isinstance(dtype, str):  # a stacking.views.ViewData, read later in batches
        return "O" if dtype == "string" else np.dtype(dtype).kind
    return np.asarray(array).dtype.kind


def _fits(expected: str, kind: str) -> bool:
    if expected == "string":
        return kind in "USO"
    if expected == "bool":
        return kind in "biu"
    if np.issubdtype(np.dtype(expected), np.integer):
        return kind in "iub"
    if np.issubdtype(np.dtype(expected), np.floating):
        return kind in "fiub"
    return np.dtype(expected).kind == kind


def check_input_dtypes(model: FrozenModel, arrays: list[np.ndarray], *, model_name: str) -> None:
    """Refuse arrays the model cannot take without changing their meaning: text for a
    number input, numbers for text, fractional values for integer ids. Numbers are fed
    in the model's own dtype (ints to a float input are cast)."""
    for name, expected, array in zip(model.input_names, model.input_dtypes, arrays):
        kind = _kind(array)
        if not _fits(expected, kind):
            dtype = getattr(array, "dtype", None)
            dtype_name = dtype if isinstance(dtype, str) else np.asarray(array).dtype.name
            received = "string" if kind in "USO" else dtype_name
            fix = "a text view ({text: COLUMN})" if expected == "string" else f"dtype: {expected}"
            raise BaseModelError(
                f"base model {model_name!r} ({model.path.name}) input {name!r} expects "
                f"dtype {expected}. Received: dtype={received}; set the view's {fix}"
            )
