"""Meta-learners: every one a scikit-learn estimator, usable on its own.

* combiners (not learned): :class:`CombinerClassifier` / :class:`CombinerRegressor`
  (mean, weighted, vote, rank, geometric, median);
* learned weights: :class:`NNLSClassifier` / :class:`NNLSRegressor` (Breiman 1996),
  :class:`EnsembleSelectionClassifier` / :class:`EnsembleSelectionRegressor`
  (Caruana et al. 2004);
* Keras: :class:`KerasMLPClassifier` / :class:`KerasMLPRegressor`,
  :class:`ConvexCombinationClassifier` / :class:`ConvexCombinationRegressor`;
* and any scikit-learn estimator by import path (see :func:`make_candidate`).
"""

from __future__ import annotations

from stacking.meta._candidates import (
    SHORT_NAMES,
    Candidate,
    cross_fit,
    make_candidate,
    predict_output,
    refit,
)
from stacking.meta._combiners import CombinerClassifier, CombinerRegressor
from stacking.meta._convex import ConvexCombinationClassifier, ConvexCombinationRegressor
from stacking.meta._keras import KerasMLPClassifier, KerasMLPRegressor
from stacking.meta._nnls import NNLSClassifier, NNLSRegressor
from stacking.meta._selection import EnsembleSelectionClassifier, EnsembleSelectionRegressor

__all__ = [
    "SHORT_NAMES",
    "Candidate",
    "CombinerClassifier",
    "CombinerRegressor",
    "ConvexCombinationClassifier",
    "ConvexCombinationRegressor",
    "EnsembleSelectionClassifier",
    "EnsembleSelectionRegressor",
    "KerasMLPClassifier",
    "KerasMLPRegressor",
    "NNLSClassifier",
    "NNLSRegressor",
    "cross_fit",
    "make_candidate",
    "predict_output",
    "refit",
]
