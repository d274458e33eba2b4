"""What goes into an MLflow run besides numbers: the pyfunc ``ensemble`` model, datasets.

Only called inside an active run of :class:`~stacking.tracking.MlflowTracker`.
"""

from __future__ import annotations

import fnmatch
import tempfile
import time
import warnings
from collections.abc import Collection
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from stacking.tracking._base import DatasetRecord, flatten

if TYPE_CHECKING:
    import pandas as pd

    from stacking.predictor import EnsemblePredictor

# Example rows and the ensemble's output for them: what the logged signature is inferred from.
Example: TypeAlias = "tuple[pd.DataFrame, pd.DataFrame]"

# The pyfunc model's settings (keys of its model_config), kept beside it for logging.
SERVING_SETTINGS = ("image_root", "max_rows", "max_image_bytes", "max_image_pixels")

_MAX_PARAM = 6000
_PYFUNC_CODE = Path(__file__).with_name("_pyfunc_model.py")
_RUNTIME = [
    "tensorflow",
    "keras",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
    "pyarrow",
    "joblib",
    "pyyaml",
    "pydantic",
    "tqdm",
]
# pandas dtype name prefix -> MLflow column type, for schemas described without rows.
_TYPES = {
    "float": "double",
    "int": "long",
    "uint": "long",
    "bool": "boolean",
    "datetime": "datetime",
}


def _mlflow_type(dtype: str) -> str:
    return next((t for prefix, t in _TYPES.items() if dtype.startswith(prefix)), "string")


def params(values: dict[str, Any]) -> dict[str, str]:
    """Flattened, MLflow-sized parameters (keys ≤ 250 characters, values ≤ 6000)."""
    return {k[:250]: str(v)[:_MAX_PARAM] for k, v in flatten(values).items()}


# model file suffix -> the package that runs it, pinned only when the ensemble has one
_FORMAT_RUNTIME = {".onnx": "onnxruntime"}


def _requirements(model_suffixes: Collection[str] = ()) -> list[str]:
    """The serving environment's pins: the runtime, and a format's own runtime when one
    of the ensemble's models needs it (ONNX members need onnxruntime)."""
    pins = []
    extra = [_FORMAT_RUNTIME[s] for s in sorted(model_suffixes) if s in _FORMAT_RUNTIME]
    for name in [*_RUNTIME, *extra]:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _view_specs(predictor: EnsemblePredictor) -> list[dict[str, Any]]:
    """Every view the predictor's base models read, as plain dicts."""
    return [
        view if isinstance(view, dict) else view.model_dump()
        for recipe in predictor.stack.base_models
        for view in recipe.views
    ]


def float_columns(predictor: EnsemblePredictor, names: list[str]) -> set[str]:
    """The columns of ``names`` that a column view reads as floats (``dtype: float32``,
    the default): a served row may hold them as integers or floats, as a run's may."""
    found: set[str] = set()
    for spec in _view_specs(predictor):
        columns = spec.get("columns")
        if columns is None or not str(spec.get("dtype", "float32")).startswith("float"):
            continue
        patterns = [columns] if isinstance(columns, str) else columns
        found |= {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
    return found


def _signature(
    mlflow: ModuleType,
    example: Example | None,
    id_column: str | None,
    floats: set[str] | None = None,
) -> Any:
    """Signature inferred from real rows; the id column is optional (unlabeled rows may
    come without one, and the model then numbers them). Columns the views read as floats
    are ``double`` whatever the example's type: one-hot columns stored as integers would
    otherwise be ``long``, and MLflow would refuse the same columns as floats."""
    if example is None:
        return None
    from mlflow.types import ColSpec, Schema, TensorSpec

    signature = mlflow.models.infer_signature(*example)
    floats = floats or set()
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("double" if c.name in floats else c.type, c.name, required=c.name != id_column)
        for c in signature.inputs.inputs
    ]
    signature.inputs = Schema(inputs)
    return signature


def request_shape(predictor: EnsemblePredictor) -> dict[str, Any] | None:
    """What each image column of a request holds, for the logged model's metadata (the
    signature can only say ``string``): the image itself, never a server path."""
    images = {}
    for spec in _view_specs(predictor):
        if isinstance(spec.get("image"), str):
            height, width = spec["size"]
            images[spec["image"]] = (
                "an image as 'data:image/png;base64,<base64 bytes>' (PNG, JPEG, GIF, BMP "
                f"or WebP), resized to {height}x{width}, {spec['channels']} channel(s)"
            )
    return {"stacking.image_columns": images} if images else None


def log_ensemble_model(
    mlflow: ModuleType,
    model_dir: Path,
    example: Example | None = None,
    register_as: str | None = None,
) -> str:
    """Log the predictor folder, base models copied in, as the pyfunc model ``ensemble``.

    "Models from code": the model is ``_pyfunc_model.py`` plus the predictor folder as an
    artifact, and the ``stacking`` package as code, so no pickle of a Python class is
    needed to serve it. ``register_as`` also creates a registered model version. Returns
    the logged model's id.
    """
    from stacking.predictor import EnsemblePredictor

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow's advisory hints (integer columns, no input example) would be printed on
        # every run; the signature below is inferred from real rows and their output.
        warnings.simplefilter("ignore", UserWarning)
        predictor = EnsemblePredictor.load(model_dir)
        bundle = predictor.save(Path(tmp) / "predictor", copy_models=True)
        suffixes = {p.suffix.lower() for r in predictor.stack.base_models for p in r.row_paths}
        info = mlflow.pyfunc.log_model(
            name="ensemble",
            python_model=str(_PYFUNC_CODE),
            artifacts={"predictor": str(bundle)},
            code_paths=[str(Path(__file__).resolve().parents[1])],
            pip_requirements=_requirements(suffixes),
            signature=_signature(
                mlflow,
                example,
                predictor.id_column,
                float_columns(predictor, list(example[0].columns)) if example else None,
            ),
            metadata=request_shape(predictor),
            # The operator's serving settings (image_root, limits), set when loading.
            model_config=dict.fromkeys(SERVING_SETTINGS),
            registered_model_name=register_as,
        )
    mlflow.set_tag("stacking.ensemble_model_id", info.model_id)
    if register_as and info.registered_model_version is not None:
        mlflow.set_tag(
            "stacking.registered_model", f"{register_as}/{info.registered_model_version}"
        )
    return info.model_id


def log_datasets(mlflow: ModuleType, datasets: list[DatasetRecord]) -> None:
    """Log each table as a run input (context ``training``/``test``) with the project's
    full-content digest; MLflow's own digest would read only the first 10,000 rows."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, Schema

    for ds in datasets:
        schema = Schema([ColSpec(_mlflow_type(dtype), name) for name, dtype in ds.columns.items()])
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a file
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(ds.source)
        # MLflow marks Dataset.profile abstract but MetaDataset is meant to be instantiated
        # as is (MLflow's own docs do); its profile is simply None.
        dataset = MetaDataset(  # type: ignore[abstract]
            source=source,
            name=Path(ds.source).name,
            digest=ds.digest,
            schema=schema,
        )
        _log_input(mlflow, dataset, context=ds.context, tags={"stacking.n_rows": str(ds.n_rows)})


def _log_input(mlflow: ModuleType, dataset: Any, *, context: str, tags: dict[str, str]) -> None:
    """``mlflow.log_input``, retried when a concurrent run inserted the same dataset first.

    Two runs recording the same table at once both try to create its dataset row; the
    loser's insert fails on the store's unique constraint, and a retry then finds the row.
    """
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context=context, tags=tags)
            return
        except Exception as exc:
            if "UNIQUE constraint failed: datasets" not in str(exc) or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
