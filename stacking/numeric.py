"""Shared numeric helpers: clipping constants, softmax, sigmoid, logit, ranks.

One place for the small formulas that several stages need, so that a probability is
clipped, squashed or turned into log-odds the same way everywhere. The constants differ
on purpose, each for its own use:

* :data:`EPS_LOG` (``1e-15``): probabilities clipped before ``log`` in a *metric*
  (scikit-learn's historical ``log_loss`` epsilon), so a metric stays finite but still
  punishes a confident mistake;
* :data:`EPS_LOGIT` (``1e-6``): probabilities clipped before log-odds *features*, so a
  meta-model never sees a feature of ±34 from a saturated base model.

Ranks (:func:`rank_reference`, :func:`rank_against`) place values among a reference
distribution kept from training, never among the other values being ranked: the rank
level-1 features and the ``rank`` combiner share them, so a row's rank does not depend on
the rows served with it.

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


def rank_reference(
    reference: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(ordered, cumulative)``: each column of ``reference`` sorted, for :func:`rank_against`.

    ``cumulative[i, j]`` is the share of the total ``sample_weight`` held by the ``i + 1``
    smallest values of column ``j``; ``None`` when every row weighs the same (then the share
    is ``(i + 1) / n``, computed on the fly). A weight of 2 counts a row twice, 0 drops it.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if sample_weight is None:
        return np.sort(reference, axis=0), None
    order = np.argsort(reference, axis=0, kind="stable")
    weights = np.asarray(sample_weight, dtype=np.float64)[order]
    cumulative = np.cumsum(weights, axis=0) / weights.sum(axis=0)
    return np.take_along_axis(reference, order, axis=0), cumulative


def rank_against(
    values: np.ndarray, ordered: np.ndarray, cumulative: np.ndarray | None = None
) -> np.ndarray:
    """Each column of ``values`` ranked in the same column of the reference: in ``[0, 1]``.

    The rank of ``v`` is the share of reference rows whose value is ``<= v`` (ties share the
    higher rank; above every reference value 1, below every one 0), weighted when
    ``cumulative`` is given; ``ordered, cumulative`` come from :func:`rank_reference`.

    >>> reference = rank_reference(np.array([[1.0], [2.0], [3.0], [4.0]]))
    >>> rank_against(np.array([[0.5], [2.0], [2.5], [9.0]]), *reference).ravel().tolist()
    [0.0, 0.5, 0.5, 1.0]
    """
    n = ordered.shape[0]
    ranked = np.empty(values.shape, dtype=np.float64)
    for j in range(values.shape[1]):
        below = np.searchsorted(ordered[:, j], values[:, j], side="right")
        if cumulative is None:
            ranked[:, j] = below / n
        else:
            ranked[:, j] = np.where(below > 0, cumulative[np.maximum(below - 1, 0), j], 0.0)
    return ranked
