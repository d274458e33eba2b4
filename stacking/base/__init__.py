"""Base models: find, check and load frozen models of any supported format (TensorFlow's
.keras/.h5, SavedModel and LiteRT, and ONNX).

The three honest ways of docs/architecture.md are resolved here:

1. a fold-model directory (``fold_0.keras`` … ``fold_{K-1}.keras`` + ``stacking.json``)
   whose manifest's fold-plan digest equals the experiment's;
2. a single model declared ``trained_on: external``;
3. a single frozen model used as a backbone (``head:`` set): its embeddings (a ``layer``'s
   output) feed a light head cross-fitted on the experiment's folds.

Way 1 also comes without models: prediction files (``predictions: {oof, test}``) written
by a model trained anywhere on the experiment's fold plan (:mod:`._predictions`).

Anything else raises :class:`~stacking.errors.LeakageError` explaining them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stacking.base import _keras, _onnx, _savedmodel, _tflite  # noqa: F401  (register loaders)
from stacking.base._base import (
    KINDS,
    LOADERS,
    FrozenModel,
    ModelLoader,
    get_loader,
    is_model,
    register_loader,
)
from stacking.base._digest import path_digest
from stacking.base._inputs import arrange_inputs, check_input_dtypes
from stacking.base._inspect import inspect_model
from stacking.base._manifest import (
    MANIFEST,
    check_model_files,
    read_manifest,
    verify_model_files,
    write_manifest,
)
from stacking.base._predictions import (
    SUM_TOLERANCE,
    PredictionFiles,
    check_recorded_files,
    digest_tag,
    read_prediction_files,
    served_columns,
)
from stacking.config import BaseModelSpec, ViewConfig
from stacking.errors import BaseModelError, DataFileNotFoundError, LeakageError

__all__ = [
    "KINDS",
    "LOADERS",
    "MANIFEST",
    "SUM_TOLERANCE",
    "FrozenModel",
    "ModelLoader",
    "PredictionFiles",
    "ResolvedBaseModel",
    "arrange_inputs",
    "check_input_dtypes",
    "check_model_files",
    "check_recorded_files",
    "digest_tag",
    "get_loader",
    "inspect_model",
    "load_base_model",
    "path_digest",
    "read_manifest",
    "read_prediction_files",
    "register_loader",
    "resolve_base_model",
    "served_columns",
    "write_manifest",
]

_HOW = (
    "tf-stacking only uses a model on rows it never trained on: give a directory of fold "
    "models (fold_0.keras … + stacking.json, see stacking.train_fold_models), declare a "
    "single model trained on disjoint data with `trained_on: external`, or use it as a "
    "frozen backbone with a cross-fitted head (`layer: NAME` and `head: logistic`)"
)


def load_base_model(
    path: str | Path,
    *,
    output: str | int | None = None,
    layer: str | None = None,
    custom_objects: list[str] | None = None,
) -> FrozenModel:
    """Load one model file or SavedModel folder frozen, whatever its format, with one
    output selected (a multi-output model needs ``output``, a name or an index).

    >>> model = load_base_model("models/cnn/fold_0.keras", custom_objects=["my_pkg.layers"])
    >>> probs = model.predict([x], batch_size=4096)
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"model path {str(path)!r} does not exist")
    model = get_loader(path).load(path, output=output, layer=layer, custom_objects=custom_objects)
    if model.output_index is None:
        model.select_output(output)  # several outputs and none picked: a clear error
    return model


class ResolvedBaseModel(BaseModel):
    """A base model's :class:`~stacking.config.BaseModelSpec` resolved against one
    experiment, with what training derived from it; ``stack.json`` holds it as
    :meth:`model_dump` writes it (``heads`` and ``predictions`` are saved elsewhere).

    ``fold_paths`` give out-of-fold predictions (the one file of an external model or a
    backbone); ``row_paths`` predict new rows (the fold models, the ``full`` model, or the
    single model); ``views`` are what each model input reads, columns resolved to names.
    ``fitted_outputs_are`` is the ``proba`` / ``logits`` training decided for
    ``outputs_are: auto``; a backbone's ``heads`` are its K fitted fold heads, and a
    prediction-file member's ``predictions`` its checked files.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    spec: BaseModelSpec
    kind: Literal["folds", "external", "backbone", "predictions"]
    fold_paths: list[Path] = Field(default_factory=list)
    row_paths: list[Path] = Field(default_factory=list)
    views: list[ViewConfig] = Field(default_factory=list)
    fitted_outputs_are: Literal["proba", "logits"] | None = None
    heads: list[Any] = Field(default_factory=list, exclude=True, repr=False)
    predictions: PredictionFiles | None = Field(None, exclude=True, repr=False)

    @property
    def outputs_are(self) -> str:
        """How the outputs map: what training found, else what the spec declares."""
        return self.fitted_outputs_are or self.spec.outputs_are


def _find(directory: Path, stem: str) -> Path | None:
    found = [p for p in sorted(directory.glob(f"{stem}*")) if p.stem == stem and is_model(p)]
    found += [p for p in [directory / stem] if p.is_dir() and is_model(p)]
    return found[0] if found else None


def resolve_base_model(
    name: str,
    cfg: BaseModelSpec,
    *,
    folds_digest: str,
    n_splits: int,
    task: str,
    classes: Sequence[Any],
) -> ResolvedBaseModel:
    """Check a configured base model against the experiment and find its files.

    The views are left to the caller (they need the data's columns), and so are
    prediction files, read by :func:`read_prediction_files` (they need the data's ids).
    """
    if cfg.predictions is not None:
        return ResolvedBaseModel(name=name, spec=cfg, kind="predictions")
    path = cfg.path
    assert path is not None, "the config requires `path` or `predictions`"
    if not path.exists():
        raise DataFileNotFoundError(f"base model {name!r}: path {str(path)!r} does not exist")
    is_fold_dir = path.is_dir() and not is_model(path)
    if not is_fold_dir:
        if cfg.trained_on != "external" and cfg.head is None:
            raise LeakageError(
                f"base model {name!r} is a single model ({str(path)!r}) with no declaration "
                f"of what it was trained on. {_HOW}"
            )
        if cfg.trained_on == "folds":
            raise LeakageError(
                f"base model {name!r}: `trained_on: folds` names a fold-model directory, but "
                f"{str(path)!r} is one model; point `path` at the directory"
            )
        if (path.parent / MANIFEST).is_file():
            # A fold or full model of some fold plan: trained on (part of) these rows.
            raise LeakageError(
                f"base model {name!r}: {str(path)!r} sits beside fold models "
                f"({MANIFEST}), so it was trained on stacking rows and is neither external "
                "nor a clean backbone; point `path` at the folder to use the fold models "
                "(and `test_with: full` for the full model)"
            )
        kind = "backbone" if cfg.head is not None else "external"
        return ResolvedBaseModel(
            name=name, spec=cfg, kind=kind, fold_paths=[path], row_paths=[path]
        )
    if cfg.trained_on == "external" or cfg.head is not None:
        key = "head" if cfg.head is not None else "trained_on: external"
        raise BaseModelError(
            f"base model {name!r}: `{key}` takes one model, but {str(path)!r} is a "
            "directory; point `path` at the model file"
        )
    if not (path / MANIFEST).is_file():
        raise LeakageError(
            f"base model {name!r}: {str(path)!r} has no {MANIFEST}, so its fold plan cannot "
            f"be checked. Write one with stacking.write_manifest(dir, fold_plan=...) if the "
            f"models were trained on this experiment's folds.csv. {_HOW}"
        )
    manifest = read_manifest(path)
    # The task first: another task gives another fold plan (stratified or not), and the
    # digest mismatch that follows would send the user retraining instead of to data.task.
    if manifest["task"] != task:
        raise BaseModelError(
            f"base model {name!r} was trained for a {manifest['task']} task but the data is "
            f"{task}; set data.task: {manifest['task']} if that is the task, or use a "
            f"{task} model"
        )
    if manifest["n_splits"] != n_splits or manifest["folds_digest"] != folds_digest:
        raise LeakageError(
            f"base model {name!r} was trained on fold plan {manifest['folds_digest']} "
            f"(K={manifest['n_splits']}) but this experiment's plan is {folds_digest} "
            f"(K={n_splits}); a fold model could have seen the rows it predicts. Use the "
            f"same folds (e.g. `folds: {{column: fold}}` from the training folds.csv) or "
            f"retrain with stacking.train_fold_models"
        )
    expected = [str(c) for c in classes]
    if manifest.get("classes") and manifest["classes"] != expected:
        raise BaseModelError(
            f"base model {name!r} predicts classes {manifest['classes']} but the data's "
            f"target has {expected}; its output columns would be misread. If the models "
            f"output the classes in that order, declare it: data.classes: {manifest['classes']}"
        )
    fold_paths = []
    for k in range(n_splits):
        found = _find(path, f"fold_{k}")
        if found is None:
            raise BaseModelError(
                f"base model {name!r}: {str(path)!r} has no fold_{k} model "
                f"(.keras, .h5, .tflite, .onnx or SavedModel folder) though its manifest says "
                f"K={n_splits}"
            )
        fold_paths.append(found)
    full = _find(path, "full")
    if cfg.test_with == "full" and full is None:
        raise BaseModelError(
            f"base model {name!r}: `test_with: full` but {str(path)!r} has no full model"
        )
    used = [*fold_paths, *([full] if cfg.test_with == "full" and full else [])]
    verify_model_files(name, path, manifest, used)
    return ResolvedBaseModel(
        name=name,
        spec=cfg,
        kind="folds",
        fold_paths=fold_paths,
        row_paths=[full] if cfg.test_with == "full" and full else fold_paths,
    )
