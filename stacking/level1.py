"""The level-1 matrix: base-model predictions turned into meta-model features.

Two views of the same out-of-fold predictions are kept:

* ``blocks``: one block of probability columns per base model (see
  :mod:`stacking.meta._layout`), the input of combiners such as mean, NNLS, ensemble
  selection and the convex model, which combine probabilities by definition;
* ``features``: what learned meta-models (logistic regression, MLP, …) read, named
  ``<model>__<output>``, as ``meta.features`` asks: probabilities, log-odds (``logit``)
  or per-model ranks; for binary tasks the redundant negative column dropped; optional
  passthrough of original columns; optional FWLS terms (Sill et al. 2009,
  "Feature-Weighted Linear Stacking"): each level-1 column times each named
  meta-feature, so a linear meta-model's weights vary with those meta-features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stacking.config import FeaturesConfig
from stacking.data import Dataset, resolve_columns
from stacking.errors import DataError

_EPS = 1e-6


@dataclass
class Level1:
    """Level-1 inputs for train rows (and test rows); see the module docstring."""

    models: list[str]
    features: pd.DataFrame
    blocks: np.ndarray
    columns_per_model: int
    test_features: pd.DataFrame | None = None
    test_blocks: np.ndarray | None = None


def to_block(pred: np.ndarray, task: str) -> np.ndarray:
    """A model's prediction in block layout: binary keeps the positive-class column."""
    if task == "regression":
        return pred.reshape(-1, 1)
    return pred[:, 1:] if task == "binary" else pred


def block_names(model: str, data: Dataset, *, drop_redundant: bool = True) -> list[str]:
    names = data.output_names()
    if data.task == "binary" and drop_redundant:
        names = names[1:]
    return [f"{model}__{n}" for n in names]


def _transform(train: np.ndarray, test: np.ndarray | None, kind: str, task: str):
    if kind == "proba" or task == "regression" and kind == "logit":
        return train, test
    if kind == "logit":

        def logit(p):
            p = np.clip(p, _EPS, 1 - _EPS)
            return np.log(p) if task == "multiclass" else np.log(p / (1 - p))

        return logit(train), None if test is None else logit(test)
    # rank: each column's rank among the training OOF values, scaled to (0, 1]; test rows
    # are placed by the same training distribution so train and test ranks agree.
    ranked = np.empty_like(train, dtype=float)
    ranked_test = None if test is None else np.empty_like(test, dtype=float)
    n = len(train)
    for j in range(train.shape[1]):
        ordered = np.sort(train[:, j])
        ranked[:, j] = np.searchsorted(ordered, train[:, j], side="right") / n
        if test is not None:
            ranked_test[:, j] = np.searchsorted(ordered, test[:, j], side="right") / n
    return ranked, ranked_test


def _original(data: Dataset, columns: list[str], which: str) -> pd.DataFrame:
    frame = data.train if which == "train" else data.test
    source = data.source.get(which, which)
    names = [c for spec in columns for c in resolve_columns(frame, spec, source=source)]
    values = frame[names]
    if not all(pd.api.types.is_numeric_dtype(values[c]) for c in names):
        raise DataError(f"passthrough/fwls columns of {source} must be numeric: {names}")
    return values.astype(float).reset_index(drop=True)


def build_level1(preds: dict, data: Dataset, cfg: FeaturesConfig) -> Level1:
    """Assemble :class:`Level1` from each base model's ``BasePredictions``."""
    models = list(preds)
    has_test = all(p.test is not None for p in preds.values()) and data.test is not None
    blocks = [to_block(preds[m].oof, data.task) for m in models]
    test_blocks = [to_block(preds[m].test, data.task) for m in models] if has_test else None

    def features_of(m, which):
        pred = preds[m].oof if which == "train" else preds[m].test
        keep_both = data.task == "binary" and not cfg.drop_redundant
        return pred if keep_both else to_block(pred, data.task)

    frames, test_frames = [], []
    for m in models:
        train, test = _transform(
            features_of(m, "train"),
            features_of(m, "test") if has_test else None,
            cfg.kind,
            data.task,
        )
        names = block_names(m, data, drop_redundant=cfg.drop_redundant)
        frames.append(pd.DataFrame(train, columns=names))
        if has_test:
            test_frames.append(pd.DataFrame(test, columns=names))
    features = pd.concat(frames, axis=1)
    test_features = pd.concat(test_frames, axis=1) if has_test else None
    for which in ["train", "test"] if has_test else ["train"]:
        base = features if which == "train" else test_features
        parts = [base]
        if cfg.fwls:
            meta = _original(data, cfg.fwls, which)
            parts += [
                pd.DataFrame(
                    base[c].to_numpy()[:, None] * meta.to_numpy(),
                    columns=[f"{c}__x__{f}" for f in meta.columns],
                )
                for c in base.columns
            ]
        if cfg.passthrough:
            parts.append(_original(data, cfg.passthrough, which))
        joined = pd.concat(parts, axis=1)
        if which == "train":
            features = joined
        else:
            test_features = joined
    return Level1(
        models=models,
        features=features,
        blocks=np.hstack(blocks),
        columns_per_model=blocks[0].shape[1],
        test_features=test_features,
        test_blocks=np.hstack(test_blocks) if has_test else None,
    )
