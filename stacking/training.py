"""Cross-fitted fold models with a correct manifest: the first honest way to stack.

>>> plan = make_fold_plan(FoldsConfig(n_splits=5), dataset)
>>> train_fold_models(build_mlp, [x], y, plan, "models/mlp", task="multiclass",
...                   classes=list(range(10)), fit_kwargs={"epochs": 30})

Fold model *k* is trained on every row outside fold *k* and saved as ``fold_k.keras``;
the manifest ``stacking.json`` is written last, atomically, with the sha256 of every
model file, so an interrupted training leaves a directory that tf-stacking refuses
rather than a silently incomplete one, and a model file replaced later is refused too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stacking.base import MANIFEST, check_model_files, read_manifest, write_manifest
from stacking.errors import ConfigError
from stacking.executors import releasing_models
from stacking.folds import FoldPlan


def fold_models_exist(directory: str | Path, fold_plan: FoldPlan) -> bool:
    """True when ``directory`` already holds fold models for exactly this fold plan, each
    still the file its manifest recorded (a replaced file means: train again)."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        return False
    manifest = read_manifest(directory)
    paths = [directory / f"fold_{k}.keras" for k in range(fold_plan.n_splits)]
    if manifest["folds_digest"] != fold_plan.digest or not all(p.is_file() for p in paths):
        return False
    status = check_model_files(manifest, paths)  # None: an older manifest, no hashes
    return status is None or all(state == "ok" for state in status.values())


def _fit_ready(x: np.ndarray):
    """Strings as a ``tf.string`` tensor: Keras 3 fits no numpy array of str or object."""
    if np.asarray(x).dtype.kind not in "OUS":
        return x
    import tensorflow as tf

    return tf.constant(np.asarray(x).astype(str))


def train_fold_models(
    build_fn: Callable[[], Any],
    inputs: list[np.ndarray] | np.ndarray,
    y: np.ndarray,
    fold_plan: FoldPlan,
    directory: str | Path,
    *,
    task: str,
    classes: list | None = None,
    fit_kwargs: dict[str, Any] | None = None,
    train_full: bool = False,
    sample_weight: np.ndarray | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Train one model per fold with ``build_fn()`` and save a base-model directory.

    ``build_fn`` returns a new compiled Keras model each call. ``inputs`` is one array or
    a list (multi-input), row-aligned with ``fold_plan.ids`` and ``y``. Classification
    targets are class indices ``0..C-1`` in ``classes`` order, and the model's output
    column *j* must be class *j*. Returns the directory.
    """
    import keras

    directory = Path(directory)
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if any(len(x) != len(fold_plan.ids) for x in [*inputs, y]):
        raise ConfigError(
            f"train_fold_models: inputs and y must have one row per fold-plan id "
            f"({len(fold_plan.ids)}). Received lengths {[len(x) for x in [*inputs, y]]}"
        )
    if directory.exists():
        if not overwrite and any(directory.iterdir()):
            raise ConfigError(f"{str(directory)!r} is not empty; pass overwrite=True to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    fit_kwargs = {"verbose": 0, **(fit_kwargs or {})}

    def fit_save(rows: np.ndarray, name: str) -> None:
        keras.utils.set_random_seed(seed)
        model = build_fn()
        weights = None if sample_weight is None else sample_weight[rows]
        xs = [_fit_ready(x[rows]) for x in inputs]
        model.fit(xs if len(xs) > 1 else xs[0], y[rows], sample_weight=weights, **fit_kwargs)
        model.save(directory / f"{name}.keras")
        # Keras' global state (layer-name counters) reset; the model's memory is given back
        # by ``release`` below, which collects only what this fit allocated.
        keras.backend.clear_session(free_memory=False)

    with releasing_models() as release:
        for k in range(fold_plan.n_splits):
            fit_save(fold_plan.train_index(k), f"fold_{k}")
            release()
        if train_full:
            fit_save(np.arange(len(fold_plan.ids)), "full")
            release()
    fold_plan.save(directory / "folds.csv")
    write_manifest(
        directory,
        fold_plan=fold_plan,
        task=task,
        classes=classes,
        has_full=train_full,
    )
    return directory
