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

from stacking.meta._base import (
    LEVEL1_TAG,
    get_meta_learner,
    reads_blocks,
    register_meta_learner,
    short_names,
)
from stacking.meta._candidates import (
    Candidate,
    cross_fit,
    make_candidate,
    predict_output,
    refit,
    with_layout,
)
from stacking.meta._combiners import CombinerClassifier, CombinerRegressor
from stacking.meta._convex import ConvexCombinationClassifier, ConvexCombinationRegressor
from stacking.meta._keras import KerasMLPClassifier, KerasMLPRegressor
from stacking.meta._nested import (
    NestedScore,
    check_nested,
    fit_levels,
    nested_selection,
    repeated_oof,
)
from stacking.meta._nnls import NNLSClassifier, NNLSRegressor
from stacking.meta._selection import EnsembleSelectionClassifier, EnsembleSelectionRegressor

SHORT_NAMES = short_names()  # every learner module above has registered its names

__all__ = [
    "LEVEL1_TAG",
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
    "NestedScore",
    "check_nested",
    "cross_fit",
    "fit_levels",
    "get_meta_learner",
    "make_candidate",
    "nested_selection",
    "predict_output",
    "reads_blocks",
    "refit",
    "register_meta_learner",
    "repeated_oof",
    "short_names",
    "with_layout",
]
