"""The level-1 layout shared by every meta-learner tf-stacking defines.

A level-1 matrix ``X`` has one block of columns per base model, blocks side by side in
the order of the base models::

    X = [ model_0 block | model_1 block | ... ]

Each block has ``columns_per_model`` columns:

* regression: 1 (the prediction);
* binary classification: 1 (the probability of the positive class, the redundant
  negative column dropped);
* multiclass: ``n_classes`` (one probability per class, in ``classes_`` order);
* multilabel: ``n_labels`` (one probability per label).

``columns_per_model="auto"`` derives the width from the target seen in ``fit`` as above.
The experiment passes it explicitly whenever its level-1 features differ from that
default (for example binary tasks that keep both columns).
"""

from __future__ import annotations

import numpy as np


def block_width(columns_per_model: int | str, *, n_outputs: int) -> int:
    """Resolve ``columns_per_model``: ``"auto"`` gives ``n_outputs``.

    ``n_outputs`` is 1 for regression and binary, ``n_classes`` for multiclass and
    ``n_labels`` for multilabel targets.
    """
    if columns_per_model == "auto":
        return n_outputs
    if isinstance(columns_per_model, (int, np.integer)) and columns_per_model >= 1:
        return int(columns_per_model)
    raise ValueError(
        "columns_per_model must be 'auto' or a positive integer. "
        f"Received: columns_per_model={columns_per_model!r}"
    )


def split_blocks(X: np.ndarray, width: int) -> np.ndarray:
    """Reshape ``X`` of shape ``(n, n_models * width)`` to ``(n, n_models, width)``.

    >>> split_blocks(np.arange(6.0).reshape(1, 6), 3).shape
    (1, 2, 3)
    """
    n_features = X.shape[1]
    if n_features % width != 0:
        raise ValueError(
            f"X has {n_features} columns, which is not a whole number of base-model blocks "
            f"of {width} columns each. Pass columns_per_model to match the level-1 layout."
        )
    return X.reshape(X.shape[0], n_features // width, width)


def binary_to_two_columns(p_positive: np.ndarray) -> np.ndarray:
    """``(n,)`` positive-class probabilities to ``(n, 2)`` ``[1 - p, p]``."""
    p = np.clip(p_positive, 0.0, 1.0)
    return np.column_stack([1.0 - p, p])
