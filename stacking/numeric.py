"""Shared numeric helpers: clipping constants, softmax, sigmoid, logit.

One place for the small formulas that several stages need, so that a probability is
clipped, squashed or turned into log-odds the same way everywhere. The constants differ
on purpose, each for its own use:

* :data:`EPS_LOG` (``1e-15``): probabilities clipped before ``log`` in a *metric*
  (scikit-learn's historical ``log_loss`` epsilon), so a metric stays finite but still
  punishes a confident mistake;
* :data:`EPS_LOGIT` (``1e-6``): probabilities clipped before log-odds *features*, so a
  meta-model never sees a feature of ±34 from a saturated base model.

>>> softmax(np.array([[0.0, 0.0]])).tolist(), float(sigmoid(np.array(0.0)))
([[0.5, 0.5]], 0.5)
"""

from __future__ import annotations

import numpy as np

EPS_LOG = 1e-15
EPS_LOGIT = 1e-6


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits do not overflow."""
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))``; a very negative ``z`` gives 0 without an overflow warning."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def clip_proba(p: np.ndarray, eps: float, *, upper: bool = True) -> np.ndarray:
    """``p`` clipped to ``[eps, 1 - eps]`` (or ``[eps, 1]`` with ``upper=False``)."""
    return np.clip(p, eps, 1.0 - eps if upper else 1.0)


def logit(p: np.ndarray, eps: float = EPS_LOGIT) -> np.ndarray:
    """Log-odds ``log(p / (1 - p))`` of ``p`` clipped to ``[eps, 1 - eps]``."""
    p = clip_proba(p, eps)
    return np.log(p / (1 - p))


def normalise_rows(p: np.ndarray) -> np.ndarray:
    """Rows divided by their sum, so each row of class probabilities sums to 1."""
    return p / p.sum(axis=1, keepdims=True)
