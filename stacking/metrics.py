"""Metrics by scikit-learn scorer name, always reported in their natural direction.

Names are scikit-learn's scorer names without the ``neg_`` prefix (``log_loss``,
``accuracy``, ``roc_auc``, ``rmse``, ...); ``neg_log_loss`` and the long regression names
(``neg_root_mean_squared_error``) are accepted as aliases. Each :class:`Metric` knows
whether lower or higher is better, so a leaderboard never shows a negated loss.

Prediction representation, the same everywhere in tf-stacking:

* classification (binary, multiclass): ``y_true`` holds class *indices* ``0..C-1`` and
  ``y_pred`` is the ``(n, C)`` probability matrix;
* multilabel: ``y_true`` is the ``(n, L)`` 0/1 indicator matrix, ``y_pred`` the ``(n, L)``
  label probabilities;
* regression: ``y_true`` and ``y_pred`` are ``(n,)`` values.

>>> get_metric("neg_log_loss").name, get_metric("log_loss").greater_is_better
('log_loss', False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from stacking.errors import ConfigError

_EPS = 1e-15


@dataclass(frozen=True)
class Metric:
    """A named score with a direction, computed from the representation above."""

    name: str
    greater_is_better: bool
    tasks: frozenset[str]
    _func: Callable[..., float]

    def __call__(self, y_true, y_pred, *, task: str, sample_weight=None) -> float:
        if task not in self.tasks:
            raise ConfigError(
                f"metric {self.name!r} does not apply to a {task} task. "
                f"Received: metrics=[..., {self.name!r}, ...]; use one of "
                f"{sorted(n for n, m in _METRICS.items() if task in m.tasks)}"
            )
        return float(self._func(np.asarray(y_true), np.asarray(y_pred), task, sample_weight))

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b

    @property
    def direction(self) -> str:
        return "higher is better" if self.greater_is_better else "lower is better"


def _labels(y_pred: np.ndarray, task: str) -> np.ndarray:
    if task == "multilabel":
        return (y_pred >= 0.5).astype(int)
    return np.argmax(y_pred, axis=1)


def _log_loss(y, p, task, w):
    if task == "multilabel":
        p = np.clip(p, _EPS, 1 - _EPS)
        per_row = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
        return np.average(per_row, weights=w)
    p = np.clip(p, _EPS, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return skm.log_loss(y, p, labels=np.arange(p.shape[1]), sample_weight=w)


def _roc_auc(y, p, task, w):
    if task == "binary":
        return skm.roc_auc_score(y, p[:, 1], sample_weight=w)
    if task == "multilabel":
        return skm.roc_auc_score(y, p, average="macro", sample_weight=w)
    p = p / p.sum(axis=1, keepdims=True)
    return skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1]), sample_weight=w)


def _brier(y, p, task, w):
    if task == "binary":  # scikit-learn's binary Brier: the positive column only
        return np.average((p[:, 1] - y) ** 2, weights=w)
    onehot = y if task == "multilabel" else np.eye(p.shape[1])[y]
    return np.average(((p - onehot) ** 2).sum(axis=1), weights=w)


def _label_metric(func, **kwargs):
    def compute(y, p, task, w):
        extra = dict(kwargs)
        if "average" in extra and task == "binary" and extra["average"] == "binary":
            extra["pos_label"] = 1
        return func(y, _labels(p, task), sample_weight=w, **extra)

    return compute


def _regression(func, transform=None):
    def compute(y, p, task, w):
        value = func(y, p, sample_weight=w)
        return transform(value) if transform else value

    return compute


_CLS = frozenset({"binary", "multiclass", "multilabel"})
_SINGLE = frozenset({"binary", "multiclass"})
_REG = frozenset({"regression"})

_METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("log_loss", False, _CLS, _log_loss),
        Metric("roc_auc", True, _CLS, _roc_auc),
        Metric("brier_score", False, _CLS, _brier),
        Metric("accuracy", True, _CLS, _label_metric(skm.accuracy_score)),
        Metric("balanced_accuracy", True, _SINGLE, _label_metric(skm.balanced_accuracy_score)),
        Metric("f1", True, frozenset({"binary"}), _label_metric(skm.f1_score, average="binary")),
        Metric("f1_macro", True, _CLS, _label_metric(skm.f1_score, average="macro")),
        Metric("f1_micro", True, _CLS, _label_metric(skm.f1_score, average="micro")),
        Metric("f1_weighted", True, _CLS, _label_metric(skm.f1_score, average="weighted")),
        Metric("matthews_corrcoef", True, _SINGLE, _label_metric(skm.matthews_corrcoef)),
        Metric("rmse", False, _REG, _regression(skm.mean_squared_error, np.sqrt)),
        Metric("mse", False, _REG, _regression(skm.mean_squared_error)),
        Metric("mae", False, _REG, _regression(skm.mean_absolute_error)),
        Metric("r2", True, _REG, _regression(skm.r2_score)),
        Metric("mape", False, _REG, _regression(skm.mean_absolute_percentage_error)),
        Metric("explained_variance", True, _REG, _regression(skm.explained_variance_score)),
    ]
}

_ALIASES = {
    "root_mean_squared_error": "rmse",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "mean_absolute_percentage_error": "mape",
    "brier_score_loss": "brier_score",
    "roc_auc_ovr": "roc_auc",
}


def get_metric(name: str) -> Metric:
    """Look a metric up by scorer name; ``neg_`` prefixes and long names are accepted."""
    key = name.removeprefix("neg_")
    key = _ALIASES.get(key, key)
    try:
        return _METRICS[key]
    except KeyError:
        raise ConfigError(
            f"unknown metric {name!r}. Use a scikit-learn scorer name, one of {sorted(_METRICS)}"
        ) from None


def default_metrics(task: str) -> list[str]:
    """The metrics reported when the config names none; the first is the primary one."""
    if task == "regression":
        return ["rmse", "mae", "r2"]
    if task == "multilabel":
        return ["log_loss", "roc_auc", "accuracy"]
    return ["log_loss", "accuracy", "roc_auc"]


def available_metrics() -> list[str]:
    return sorted(_METRICS)
