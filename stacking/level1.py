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

Both stay float64 (issue 9 asked whether float32 would do): on the benchmark workload and
the digits demo float32 moved no reported number by more than 2e-9, but it rounds every
probability within 6e-8 of 1 to exactly 1, so a binary block's implied ``1 - p`` becomes 0
and is clipped: with 1 % confidently wrong rows (logits 18-24) the ``mean`` combiner's log
loss moved by 2.7e-2. Halving 8 bytes per row and column is not worth a wrong leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stacking.config import FeaturesConfig
from stacking.data import Dataset, resolve_columns
from stacking.errors import DataError, LeakageError
from stacking.numeric import EPS_LOGIT, clip_proba, logit, rank_against, rank_reference


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


def next_level_input(outputs: list[np.ndarray], task: str) -> np.ndarray:
    """A level's predictions as the next level's input, in block layout."""
    return np.hstack([to_block(o, task) for o in outputs])


def block_names(model: str, data: Dataset, *, drop_redundant: bool = True) -> list[str]:
    return output_columns(model, data.task, data.output_names(), drop_redundant=drop_redundant)


def output_columns(
    model: str, task: str, output_names: list[str], *, drop_redundant: bool = True
) -> list[str]:
    """``<model>__<output>`` names of one model's columns (binary: positive class only)."""
    names = output_names[1:] if task == "binary" and drop_redundant else output_names
    return [f"{model}__{n}" for n in names]


def pre_features(pred: np.ndarray, task: str, cfg: FeaturesConfig) -> np.ndarray:
    """A model's prediction as level-1 columns, before the ``kind`` transform."""
    keep_both = task == "binary" and not cfg.drop_redundant
    return pred if keep_both else to_block(pred, task)


def _transform(values: np.ndarray, kind: str, task: str, reference: np.ndarray) -> np.ndarray:
    if kind == "proba" or (task == "regression" and kind == "logit"):
        return values
    if kind == "logit":
        if task == "multiclass":
            return np.log(clip_proba(values, EPS_LOGIT))
        return logit(values, EPS_LOGIT)
    # rank: each column's rank among the training OOF values, in (0, 1] for training rows;
    # new rows are placed in the same training distribution so train and test ranks agree.
    return rank_against(values, *rank_reference(reference))


def _original(frame: pd.DataFrame, columns: list[str], source: str) -> pd.DataFrame:
    names = [c for spec in columns for c in resolve_columns(frame, spec, source=source)]
    values = frame[names]
    if not all(pd.api.types.is_numeric_dtype(values[c]) for c in names):
        raise DataError(f"passthrough/fwls columns of {source} must be numeric: {names}")
    return values.astype(float).reset_index(drop=True)


def level1_features(
    preds: dict[str, np.ndarray],
    frame: pd.DataFrame,
    cfg: FeaturesConfig,
    *,
    task: str,
    output_names: list[str],
    reference: dict[str, np.ndarray] | None = None,
    source: str = "data",
) -> pd.DataFrame:
    """Level-1 features of rows ``frame`` from each base model's prediction ``preds[m]``.

    ``reference[m]`` holds the training rows' :func:`pre_features` (rank features place
    new rows among them); ``None`` for the training rows themselves.
    """
    parts = []
    for m, pred in preds.items():
        values = pre_features(pred, task, cfg)
        ref = values if reference is None else reference[m]
        names = output_columns(m, task, output_names, drop_redundant=cfg.drop_redundant)
        # copy=False: a probability feature is the base model's prediction itself, held
        # once (pandas copies an array by default: 8 MB more per model at 100k x 10).
        transformed = _transform(values, cfg.kind, task, ref)
        parts.append(pd.DataFrame(transformed, columns=names, copy=False))
    base = pd.concat(parts, axis=1)
    extra = [base]
    if cfg.fwls:
        meta = _original(frame, cfg.fwls, source)
        extra += [
            pd.DataFrame(
                base[c].to_numpy()[:, None] * meta.to_numpy(),
                columns=[f"{c}__x__{f}" for f in meta.columns],
            )
            for c in base.columns
        ]
    if cfg.passthrough:
        extra.append(_original(frame, cfg.passthrough, source))
    return pd.concat(extra, axis=1)


def check_meta_columns(data: Dataset, cfg: FeaturesConfig, reserved: set[str]) -> None:
    """Refuse passthrough/FWLS columns that carry the target (or id, weight, fold)."""
    source = data.source["train"]
    for key, specs in (("passthrough", cfg.passthrough), ("fwls", cfg.fwls)):
        names = [c for s in specs for c in resolve_columns(data.train, s, source=source)]
        bad = sorted(set(names) & reserved)
        if bad:
            raise LeakageError(
                f"meta.features.{key} selects {bad}: the target, id, weight or fold column "
                f"would reach the meta-model. Received: {key}={specs}; name feature columns only"
            )


def build_level1(
    preds: dict, data: Dataset, cfg: FeaturesConfig, *, include_test: bool = True
) -> Level1:
    """Assemble :class:`Level1` from each base model's ``BasePredictions``.

    The experiment builds the training rows' level 1 only (``include_test=False``): its
    test rows go through :meth:`stacking.stack.FittedStack.level1`, as served rows do.
    """
    models = list(preds)
    has_test = include_test and all(p.test is not None for p in preds.values())
    test_frame = data.test if has_test else None
    task, output_names = data.task, data.output_names()
    oof = {m: preds[m].oof for m in models}
    features = level1_features(
        oof, data.train, cfg, task=task, output_names=output_names, source=data.source["train"]
    )
    test_features = test_blocks = None
    if test_frame is not None:
        reference = {m: pre_features(oof[m], data.task, cfg) for m in models}
        test_features = level1_features(
            {m: preds[m].test for m in models},
            test_frame,
            cfg,
            task=task,
            output_names=output_names,
            reference=reference,
            source=data.source["test"],
        )
        test_blocks = np.hstack([to_block(preds[m].test, data.task) for m in models])
    blocks = [to_block(oof[m], data.task) for m in models]
    return Level1(
        models=models,
        features=features,
        blocks=np.hstack(blocks),
        columns_per_model=blocks[0].shape[1],
        test_features=test_features,
        test_blocks=test_blocks,
    )
