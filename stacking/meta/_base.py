"""The meta-learner plug-in contract: what a meta-learner is, and the short names.

A meta-learner is a **scikit-learn estimator** (the contract is scikit-learn's own, as
checked by ``sklearn.utils.estimator_checks.parametrize_with_checks``):

- ``__init__`` only stores its parameters; ``fit(X, y, sample_weight=None)`` validates
  and sets the fitted state on attributes ending in ``_``; ``predict`` (and, for a
  classifier, ``predict_proba`` with ``classes_`` in the order of ``y``'s labels) refuse
  an unfitted estimator; ``get_params``/``set_params``/``clone`` work;
- ``X`` is the level-1 matrix: one block of columns per base model, side by side
  (:mod:`stacking.meta._layout`). What a learner reads is an estimator tag,
  :data:`LEVEL1_TAG`: a class attribute ``_stacking_level1 = "blocks"`` says the learner
  combines per-model probability blocks; anything else (the default) reads the level-1
  features as plain columns. Third-party estimators may set it too;
- it is cross-fitted by the experiment on the fold plan, so it keeps no state between
  ``fit`` calls and is safe to ``clone``.

A *short name* (``mean``, ``nnls``, ``logistic`` …) maps to a classifier class, a
regressor class (either may be missing) and default parameters; each learner module
registers its own names next to its classes, so adding a learner is one module plus its
:func:`register_meta_learner` call::

    register_meta_learner("nnls", classifier=NNLSClassifier, regressor=NNLSRegressor)

:func:`get_meta_learner` looks a short name up (``meta.candidates: [nnls]``);
``tests/test_meta_conformance.py`` runs scikit-learn's checks over every registered name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LEVEL1_TAG = "_stacking_level1"


@dataclass(frozen=True)
class MetaLearner:
    """A short name's classes (import paths or classes) and default parameters."""

    classifier: Any = None
    regressor: Any = None
    defaults: dict[str, Any] = field(default_factory=dict)
    tasks: frozenset[str] | None = None  # None: every task its classes cover
    scale: bool = False  # standardise the level-1 columns first (a Pipeline)

    def for_task(self, task: str) -> Any:
        if self.tasks is not None and task not in self.tasks:
            return None
        return self.regressor if task == "regression" else self.classifier


_REGISTRY: dict[str, MetaLearner] = {}


def register_meta_learner(
    name: str,
    *,
    classifier: Any = None,
    regressor: Any = None,
    defaults: dict[str, Any] | None = None,
    tasks: set[str] | None = None,
    scale: bool = False,
) -> None:
    """Make ``name`` usable as ``meta.candidates: [name]`` (classes or import paths);
    ``tasks`` narrows the tasks it applies to; ``scale`` puts a StandardScaler before the
    learner (a scikit-learn Pipeline), which ``params`` still address directly."""
    if classifier is None and regressor is None:
        raise ValueError(f"meta-learner {name!r} needs a classifier or a regressor")
    _REGISTRY[name] = MetaLearner(
        classifier, regressor, dict(defaults or {}), frozenset(tasks) if tasks else None, scale
    )


def get_meta_learner(name: str) -> MetaLearner | None:
    return _REGISTRY.get(name)


def short_names(task: str | None = None) -> list[str]:
    """Registered short names (those with a variant for ``task`` when given)."""
    names = [n for n, m in _REGISTRY.items() if task is None or m.for_task(task) is not None]
    return sorted([*names, "default"])


def reads_blocks(estimator: Any) -> bool:
    """True when the estimator combines probability blocks (its :data:`LEVEL1_TAG`)."""
    return getattr(estimator, LEVEL1_TAG, "features") == "blocks"


# The linear defaults standardise their inputs: on log-probability features (columns from
# -13.8 to 0 with very different spreads) lbfgs needed ~12x the iterations unscaled, and a
# penalty means the same for every column only once they share a scale.
register_meta_learner(
    "logistic",
    classifier="sklearn.linear_model.LogisticRegression",
    defaults={"max_iter": 1000},
    scale=True,
)
register_meta_learner("ridge", regressor="sklearn.linear_model.Ridge", scale=True)
