"""MLflow: one parent run per experiment, nested runs per base model and meta candidate.

Metric names follow DESIGN.md: ``cv_<metric>`` for the chosen ensemble and
``base.<model>.cv_<metric>`` for each base model on the parent; each nested run has its
own ``cv_<metric>`` and per-fold ``fold_<metric>`` (step = fold). When the caller already
has an active run, the experiment is recorded into it instead of a competing one.
"""

from __future__ import annotations

import tempfile
import warnings
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

from stacking.errors import TrackingError
from stacking.tracking._base import RunRecord, Tracker, flatten

_MAX_PARAM = 6000


def _params(params: dict) -> dict[str, str]:
    return {k[:250]: str(v)[:_MAX_PARAM] for k, v in flatten(params).items()}


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


def _requirements() -> list[str]:
    pins = []
    for name in _RUNTIME:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def log_ensemble_model(mlflow, model_dir: Path, example=None) -> str:
    """Log the predictor folder, base models copied in, as the pyfunc model ``ensemble``.

    "Models from code": the model is ``_pyfunc_model.py`` plus the predictor folder as an
    artifact, and the ``stacking`` package as code, so no pickle of a Python class is
    needed to serve it. Returns the logged model's id.
    """
    from stacking.predictor import EnsemblePredictor

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # MLflow's advisory hints (integer columns, no input example) would be printed on
        # every run; the signature below is inferred from real rows and their output.
        warnings.simplefilter("ignore", UserWarning)
        bundle = EnsemblePredictor.load(model_dir).save(Path(tmp) / "predictor", copy_models=True)
        info = mlflow.pyfunc.log_model(
            name="ensemble",
            python_model=str(_PYFUNC_CODE),
            artifacts={"predictor": str(bundle)},
            code_paths=[str(Path(__file__).resolve().parents[1])],
            pip_requirements=_requirements(),
            signature=mlflow.models.infer_signature(*example) if example else None,
        )
    mlflow.set_tag("stacking.ensemble_model_id", info.model_id)
    return info.model_id


def resolved_uri(uri: str | None) -> str:
    """The store runs go to: ``uri`` or MLflow's own default (``sqlite:///mlflow.db``)."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


class MlflowTracker(Tracker):
    def __init__(self, uri: str | None = None, experiment: str = "tf-stacking") -> None:
        self.uri = uri
        self.experiment = experiment

    def log(self, record: RunRecord) -> str:
        import mlflow
        from mlflow.exceptions import MlflowException

        previous = mlflow.get_tracking_uri() if self.uri else None
        if self.uri:
            mlflow.set_tracking_uri(self.uri)
        try:
            return self._log(mlflow, record)
        except (MlflowException, ConnectionError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TrackingError(
                f"cannot record the run in MLflow at {resolved_uri(self.uri)}: {first}; "
                "check tracking.uri, or set tracking.enabled: false"
            ) from exc
        finally:
            if previous is not None:
                mlflow.set_tracking_uri(previous)

    def _log(self, mlflow, record: RunRecord) -> str:
        active = mlflow.active_run()
        if active is None:
            mlflow.set_experiment(self.experiment)
        context = nullcontext(active) if active else mlflow.start_run(run_name=record.name)
        with context as run:
            mlflow.log_params(_params(record.params))
            mlflow.set_tags(record.tags)
            mlflow.log_metrics(record.metrics)
            for child in record.children:
                with mlflow.start_run(run_name=child.name, nested=True):
                    mlflow.set_tags({**child.tags, "stacking.role": child.role})
                    if child.params:
                        mlflow.log_params(_params(child.params))
                    mlflow.log_metrics(child.metrics)
                    for name, values in child.fold_metrics.items():
                        for k, value in enumerate(values):
                            mlflow.log_metric(f"fold_{name}", value, step=k)
            if record.on_run_id is not None:
                record.on_run_id(run.info.run_id)  # e.g. write it into metrics.json first
            mlflow.log_artifacts(str(record.artifacts_dir))
            if record.model_dir is not None:
                log_ensemble_model(mlflow, record.model_dir, record.model_example)
            return run.info.run_id


def download_model(uri: str) -> Path:
    """Download an ``ensemble`` model (``runs:/…/ensemble``, ``models:/…``); return the
    predictor folder inside it."""
    import mlflow

    from stacking.errors import DataFileNotFoundError

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise DataFileNotFoundError(
            f"cannot fetch MLflow model {uri!r}: {str(exc).splitlines()[0]}"
        ) from exc
    predictor = local / "artifacts" / "predictor"
    if not predictor.is_dir():
        raise DataFileNotFoundError(f"{uri!r} is not a tf-stacking ensemble model")
    return predictor


def fetch_run(run_id: str, uri: str | None = None) -> tuple[dict, dict, dict]:
    """``(resolved config, tags, metrics)`` of a recorded experiment run."""
    import mlflow
    import yaml

    from stacking.errors import DataFileNotFoundError

    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "config.resolved.yaml", tmp)
            config = yaml.safe_load(Path(path).read_text())
    except Exception as exc:
        raise DataFileNotFoundError(
            f"cannot read run {run_id!r} from {resolved_uri(uri)}: {str(exc).splitlines()[0]}; "
            "check the run id and --tracking-uri"
        ) from exc
    return config, dict(run.data.tags), dict(run.data.metrics)
