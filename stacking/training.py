"""Cross-fitted fold models with a correct manifest: the first honest way to stack.

>>> plan = make_fold_plan(FoldsConfig(n_splits=5), dataset)
>>> train_fold_models(build_mlp, [x], y, plan, "models/mlp", task="multiclass",
...                   classes=list(range(10)), fit_kwargs={"epochs": 30})

Fold model *k* is trained on every row outside fold *k* and saved as ``fold_k.keras``;
the manifest ``stacking.json`` is written last, atomically, with the sha256 of every
model file, so an interrupted training leaves a directory that tf-stacking refuses
rather than a silently incomplete one, and a model file replaced later is refused too.

Models of other frameworks are trained on the same plan by :func:`train_onnx_fold_models`:
one scikit-learn or LightGBM estimator per fold, each converted to ``fold_k.onnx``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from stacking.base import MANIFEST, check_model_files, read_manifest, write_manifest
from stacking.errors import ConfigError
from stacking.executors import releasing_models
from stacking.folds import FoldPlan

_SUFFIXES = {"keras": ".keras", "onnx": ".onnx"}  # the files each helper writes


def fold_models_exist(directory: str | Path, fold_plan: FoldPlan) -> bool:
    """True when ``directory`` already holds fold models for exactly this fold plan, each
    still the file its manifest recorded (a replaced file means: train again)."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        return False
    manifest = read_manifest(directory)
    suffix = _SUFFIXES.get(manifest["format"], ".keras")
    paths = [directory / f"fold_{k}{suffix}" for k in range(fold_plan.n_splits)]
    if manifest["folds_digest"] != fold_plan.digest or not all(p.is_file() for p in paths):
        return False
    status = check_model_files(manifest, paths)  # None: an older manifest, no hashes
    return status is None or all(state == "ok" for state in status.values())


def _check_rows(helper: str, arrays: list, fold_plan: FoldPlan) -> None:
    if any(len(x) != len(fold_plan.ids) for x in arrays):
        raise ConfigError(
            f"{helper}: inputs and y must have one row per fold-plan id "
            f"({len(fold_plan.ids)}). Received lengths {[len(x) for x in arrays]}"
        )


def _empty_directory(directory: Path, overwrite: bool) -> None:
    if directory.exists():
        if not overwrite and any(directory.iterdir()):
            raise ConfigError(f"{str(directory)!r} is not empty; pass overwrite=True to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


@contextmanager
def _fresh_directory(directory: Path, overwrite: bool) -> Iterator[None]:
    """``directory`` emptied for a new fold set; if training fails part-way, the models
    written so far go again (a folder that was there stays, empty), so a retry meets
    neither a half set nor a "not empty" refusal."""
    existed = directory.exists()
    _empty_directory(directory, overwrite)
    try:
        yield
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        if existed:
            directory.mkdir(parents=True, exist_ok=True)
        raise


def _models_to_fit(fold_plan: FoldPlan, train_full: bool) -> Iterator[tuple[np.ndarray, str]]:
    """(training rows, file stem) of every model in a fold set: each fold's, then the
    ``full`` model's when asked for. No model trains on a row the plan reserves (fold -1)."""
    for k in range(fold_plan.n_splits):
        yield fold_plan.train_index(k), f"fold_{k}"
    if train_full:
        yield np.flatnonzero(~fold_plan.reserved), "full"


def _fit_ready(x: np.ndarray) -> Any:
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
    _check_rows("train_fold_models", [*inputs, y], fold_plan)
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

    with _fresh_directory(directory, overwrite), releasing_models() as release:
        for rows, name in _models_to_fit(fold_plan, train_full):
            fit_save(rows, name)
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


def to_onnx_bytes(estimator: Any, n_features: int, *, input_name: str = "x") -> bytes:
    """A fitted scikit-learn estimator (also a pipeline) or LightGBM model as an ONNX
    graph taking one float32 input ``input_name`` of ``n_features`` columns. Classifiers
    are converted without ZipMap: their ``probabilities`` output is an ``(n, C)`` array.

    >>> Path("m.onnx").write_bytes(to_onnx_bytes(LogisticRegression().fit(X, y), X.shape[1]))
    """
    module = type(estimator).__module__.split(".")[0]
    try:
        if module == "lightgbm":
            from onnxmltools import convert_lightgbm
            from onnxmltools.convert.common.data_types import FloatTensorType

            initial = [(input_name, FloatTensorType([None, n_features]))]
            model = convert_lightgbm(estimator, initial_types=initial, zipmap=False)
        else:
            from skl2onnx import to_onnx
            from skl2onnx.common.data_types import FloatTensorType as SklFloat
            from sklearn.base import is_classifier

            options = {"zipmap": False} if is_classifier(estimator) else None
            initial = [(input_name, SklFloat([None, n_features]))]
            model = to_onnx(estimator, initial_types=initial, options=options)
    except ImportError as exc:
        raise ConfigError(
            f"converting a {type(estimator).__name__} to ONNX needs "
            f"{'onnxmltools' if module == 'lightgbm' else 'skl2onnx'} ({exc}); install it "
            "with `pip install skl2onnx onnxmltools`, or pass convert=... for other frameworks"
        ) from exc
    return model.SerializeToString()


def train_onnx_fold_models(
    make_estimator: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    fold_plan: FoldPlan,
    directory: str | Path,
    *,
    task: str,
    classes: list | None = None,
    input_name: str = "x",
    fit_kwargs: dict[str, Any] | None = None,
    train_full: bool = False,
    sample_weight: np.ndarray | None = None,
    convert: Callable[[Any, int], bytes] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train one estimator per fold with ``make_estimator()`` and save each as
    ``fold_k.onnx`` (``full.onnx`` with ``train_full``), then the manifest.

    ``x`` is one ``(n, d)`` table row-aligned with ``fold_plan.ids`` and ``y``; it is fed as
    float32, the dtype the ONNX graph takes, so the stack sees the values the estimator
    was trained on. Classification targets are class indices ``0..C-1`` in ``classes``
    order. ``convert(estimator, n_features)`` returns ONNX bytes for estimators other than
    scikit-learn's and LightGBM's (e.g. ``onnxmltools.convert_xgboost``); by default
    :func:`to_onnx_bytes`. Returns the directory.

    >>> train_onnx_fold_models(lambda: LGBMClassifier(n_estimators=200), X, y, plan,
    ...                        "models/lgbm", task="binary", classes=["no", "yes"])
    """
    directory = Path(directory)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(
            f"train_onnx_fold_models: x must be a 2-D table (rows, features). "
            f"Received shape {x.shape}"
        )
    _check_rows("train_onnx_fold_models", [x, y], fold_plan)
    n_classes = len(classes or []) if task in ("binary", "multiclass") else 0
    to_bytes = convert or (lambda est, n: to_onnx_bytes(est, n, input_name=input_name))
    names = []

    def fit_save(rows: np.ndarray, name: str) -> None:
        estimator = make_estimator()
        weights = {} if sample_weight is None else {"sample_weight": sample_weight[rows]}
        estimator.fit(x[rows], y[rows], **weights, **(fit_kwargs or {}))
        fitted = getattr(estimator, "classes_", None)
        if n_classes and (fitted is None or list(fitted) != list(range(n_classes))):
            raise ConfigError(
                f"train_onnx_fold_models: the {name} estimator learned classes "
                f"{np.asarray(fitted).tolist()} but "
                f"the target has {n_classes} (indices 0..{n_classes - 1}); pass y as class "
                "indices, with every class in every fold's training rows (stratified folds)"
            )
        (directory / f"{name}.onnx").write_bytes(to_bytes(estimator, x.shape[1]))
        names.append(type(estimator).__module__.split(".")[0] + "." + type(estimator).__name__)

    with _fresh_directory(directory, overwrite):
        for rows, name in _models_to_fit(fold_plan, train_full):
            fit_save(rows, name)
        fold_plan.save(directory / "folds.csv")
        write_manifest(
            directory,
            fold_plan=fold_plan,
            task=task,
            classes=classes,
            format="onnx",
            has_full=train_full,
            extra={"estimator": names[0]},
        )
    return directory
