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
