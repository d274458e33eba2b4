"""Meta-model candidates: resolve a config entry, cross-fit it on the fold plan, refit.

A candidate is any scikit-learn-compatible estimator: a short name of tf-stacking's own
learners (``mean``, ``nnls``, ``selection``, ``mlp``, ``convex`` …), scikit-learn's
(``logistic``, ``ridge``), or an import path (``lightgbm.LGBMClassifier``) with params.
Short names resolve to the classifier or regressor variant for the task.

Meta-level cross-validation uses the experiment's own fold plan: the candidate is fitted
on the level-1 rows of every other fold and predicts fold *k*; those out-of-fold
predictions give its scores and are the features of the next level.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol, TypeAlias, overload

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import has_fit_parameter

from stacking.config import CandidateConfig
from stacking.errors import ConfigError, StackingError, did_you_mean, first_line
from stacking.folds import FoldPlan
from stacking.meta._base import get_meta_learner, reads_blocks, short_names

_API = ("fit", "get_params")


class Estimator(Protocol):
    """What the stack calls on a candidate directly (scikit-learn ships no type hints)."""

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def set_params(self, **params: Any) -> Any: ...

    def fit(self, X: Any, y: Any, **fit_params: Any) -> Any: ...


# A fitted candidate: what it offers (``predict_proba``, ``classes_``, a Pipeline's steps)
# depends on its class, and scikit-learn ships no type hints to say so.
FittedEstimator: TypeAlias = Any


@dataclass
class Candidate:
    """A named, unfitted meta-model; ``uses_blocks`` when it combines probabilities."""

    name: str
    estimator: Estimator
    uses_blocks: bool


def _import(path: str, where: str) -> type:
    """The estimator CLASS at ``path``; nothing found there is called before this check.

    Anything else (a function such as ``subprocess.check_call``, an instance, a module)
    is a :class:`ConfigError`: a config names estimators, never code to run.
    """
    module, _, attr = path.rpartition(".")
    if not module:
        raise ConfigError(
            f"{where}: {path!r} is neither a short name ({', '.join(short_names())}) "
            "nor an import path such as sklearn.linear_model.LogisticRegression"
            f"{did_you_mean(path, short_names())}"
        )
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {path!r}: {exc}") from exc
    is_estimator = isinstance(obj, type) and (
        issubclass(obj, BaseEstimator) or all(callable(getattr(obj, m, None)) for m in _API)
    )
    if not is_estimator:
        what = f"a class without {'/'.join(_API)}" if isinstance(obj, type) else type(obj).__name__
        raise ConfigError(
            f"{where}: {path!r} is not a scikit-learn estimator class (it is {what}); "
            "name an estimator class such as sklearn.linear_model.LogisticRegression"
        )
    return obj


def make_candidate(spec: str | CandidateConfig, *, task: str, where: str = "meta") -> Candidate:
    """Resolve a candidate entry of the config for ``task``."""
    if isinstance(spec, str):
        spec = CandidateConfig(estimator=spec)
    key = spec.estimator
    if key == "default":
        key = "ridge" if task == "regression" else "logistic"
    params = dict(spec.params)
    learner = get_meta_learner(key)
    scale = learner is not None and learner.scale
    if learner is not None:
        target = learner.for_task(task)
        if target is None:
            raise ConfigError(
                f"{where}: {key!r} does not apply to a {task} task; choose from {short_names(task)}"
            )
        params = {**learner.defaults, **params}
        name = spec.name or key
    else:
        target = key
        name = spec.name or key.rpartition(".")[2].lower()
    cls = target if isinstance(target, type) else _import(target, where)
    path = target if isinstance(target, str) else f"{cls.__module__}.{cls.__qualname__}"
    if task == "multilabel" and path == "sklearn.linear_model.LogisticRegression":
        from sklearn.multioutput import MultiOutputClassifier

        estimator = MultiOutputClassifier(cls(**params))
    else:
        try:
            estimator = cls(**params)
        except TypeError as exc:
            raise ConfigError(f"{where}: candidate {name!r}: {exc}") from exc
    if (task == "regression") == is_classifier(estimator):
        kind = "regressor" if task == "regression" else "classifier"
        raise ConfigError(f"{where}: candidate {name!r} ({path}) is not a {kind}")
    uses_blocks = reads_blocks(estimator)
    if scale:
        estimator = make_pipeline(StandardScaler(), estimator)
    return Candidate(name=name, estimator=estimator, uses_blocks=uses_blocks)


def predict_output(
    estimator: FittedEstimator, X: np.ndarray, *, task: str, n_outputs: int
) -> np.ndarray:
    """The candidate's prediction in the common representation (probas or values)."""
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=float).ravel()
    if not hasattr(estimator, "predict_proba"):
        raise ConfigError(
            f"meta-model {type(estimator).__name__} has no predict_proba; stacking needs "
            "probabilities (wrap it in sklearn.calibration.CalibratedClassifierCV)"
        )
    proba = estimator.predict_proba(X)
    if task == "multilabel":
        if isinstance(proba, list):  # one (n, k) array per label, e.g. MultiOutputClassifier
            last = estimator[-1] if isinstance(estimator, Pipeline) else estimator
            classes = [getattr(e, "classes_", [0, 1]) for e in getattr(last, "estimators_", [])]
            columns = []
            for j, p in enumerate(proba):
                labels = list(classes[j]) if j < len(classes) else [0, 1]
                columns.append(p[:, labels.index(1)] if 1 in labels else np.zeros(len(p)))
            proba = np.column_stack(columns)
        return np.asarray(proba, dtype=float)
    out = np.zeros((len(X), n_outputs))
    out[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return out


def _weight_kwargs(estimator: Estimator, sample_weight: np.ndarray) -> dict[str, Any] | None:
    """``fit``'s keyword arguments carrying ``sample_weight``; None when it takes none. A
    Pipeline (a scaled linear default) hands the weights to every step that takes them."""
    if not isinstance(estimator, Pipeline):
        ok = has_fit_parameter(estimator, "sample_weight")
        return {"sample_weight": sample_weight} if ok else None
    if not has_fit_parameter(estimator.steps[-1][1], "sample_weight"):
        return None
    return {
        f"{step}__sample_weight": sample_weight
        for step, part in estimator.steps
        if has_fit_parameter(part, "sample_weight")
    }


def _fit(
    estimator: Estimator,
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    name: str,
    rows: str,
) -> FittedEstimator:
    kwargs: dict[str, Any] = {}
    if sample_weight is not None:
        found = _weight_kwargs(estimator, sample_weight)
        if found is None:
            raise ConfigError(
                f"meta-model {name!r} does not accept sample_weight, but data.weight is set; "
                "choose another candidate or remove data.weight"
            )
        kwargs = found
    try:
        return estimator.fit(X, y, **kwargs)
    except StackingError:
        raise
    except ValueError as exc:  # includes scikit-learn's InvalidParameterError
        first = first_line(exc)
        raise ConfigError(
            f"meta-model {name!r} cannot be fitted on {rows}: {first}; check its params "
            "or choose another candidate"
        ) from exc


# Level-1 matrices up to this many values are fitted with one BLAS thread. Their matrix
# products are too small to share out, and on a busy machine BLAS threads wait for each
# other: logistic on 4,500 x 25 log-probabilities took 86 s with the default threads and
# 2.6 s with one (experiments/benchmarks/bench_meta_logistic.py, 2 cores under load).
SMALL_LEVEL1 = 1 << 22


@cache
def _blas_controller() -> Any:
    """The process's thread-pool controller, made once: making one lists every loaded
    shared library and reads their files (~3 ms, more beside TensorFlow), and a run calls
    :func:`_blas_threads` for every candidate and, in nested selection, every outer fold
    (~130 calls for 12 candidates). The BLAS libraries are NumPy's and SciPy's, loaded by
    their imports before any meta-model is fitted."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _blas_threads(X: np.ndarray) -> AbstractContextManager[Any]:
    """One BLAS thread for a small level 1; the library's own choice otherwise. OpenMP
    pools (LightGBM) and TensorFlow's (Keras meta-models) are left alone."""
    from contextlib import nullcontext

    if X.size > SMALL_LEVEL1:
        return nullcontext()
    limiter: AbstractContextManager[Any] = _blas_controller().limit(limits=1, user_api="blas")
    return limiter


@overload
def cross_fit(
    candidate: Candidate,
    X: ArrayLike,
    y: np.ndarray,
    plan: FoldPlan,
    *,
    task: str,
    n_outputs: int,
    sample_weight: np.ndarray | None = ...,
    return_models: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def cross_fit(
    candidate: Candidate,
    X: ArrayLike,
    y: np.ndarray,
    plan: FoldPlan,
    *,
    task: str,
    n_outputs: int,
    sample_weight: np.ndarray | None = ...,
    return_models: Literal[True],
) -> tuple[np.ndarray, list[FittedEstimator]]: ...


def cross_fit(
    candidate: Candidate,
    X: ArrayLike,
    y: np.ndarray,
    plan: FoldPlan,
    *,
    task: str,
    n_outputs: int,
    sample_weight: np.ndarray | None = None,
    return_models: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[FittedEstimator]]:
    """Out-of-fold predictions of ``candidate`` over ``plan`` (and the K fold fits)."""
    X = np.asarray(X, dtype=float)
    oof = np.zeros((len(X),) if task == "regression" else (len(X), n_outputs))
    models = []
    with _blas_threads(X):
        for k in range(plan.n_splits):
            train, test = plan.train_index(k), plan.test_index(k)
            est = clone(candidate.estimator)
            w = None if sample_weight is None else sample_weight[train]
            _fit(est, X[train], y[train], w, candidate.name, f"the rows outside fold {k}")
            oof[test] = predict_output(est, X[test], task=task, n_outputs=n_outputs)
            models.append(est)
    return (oof, models) if return_models else oof


def with_layout(candidate: Candidate, columns_per_model: int) -> Candidate:
    """``candidate`` told the level-1 block width when its learner reads blocks, so that
    a meta fold missing a class still reads the layout right (instead of inferring it)."""
    if "columns_per_model" in candidate.estimator.get_params():
        candidate.estimator.set_params(columns_per_model=columns_per_model)
    return candidate


def refit(
    candidate: Candidate, X: ArrayLike, y: np.ndarray, *, sample_weight: np.ndarray | None = None
) -> FittedEstimator:
    """The candidate fitted on every row, for test predictions and serving."""
    est = clone(candidate.estimator)
    X = np.asarray(X, dtype=float)
    with _blas_threads(X):
        return _fit(est, X, y, sample_weight, candidate.name, "all rows")
