"""MLflow: one parent run per experiment, nested runs per base model and meta candidate.

Metric names follow DESIGN.md: ``cv_<metric>`` for the chosen ensemble and
``base.<model>.cv_<metric>`` for each base model on the parent; each nested run has its
own ``cv_<metric>`` and per-fold ``fold_<metric>`` (step = fold). When the caller already
has an active run, the experiment is recorded into it instead of a competing one.
"""

from __future__ import annotations

from contextlib import nullcontext

from stacking.tracking._base import RunRecord, Tracker, flatten

_MAX_PARAM = 6000


def _params(params: dict) -> dict[str, str]:
    return {k[:250]: str(v)[:_MAX_PARAM] for k, v in flatten(params).items()}


class MlflowTracker(Tracker):
    def __init__(self, uri: str | None = None, experiment: str = "tf-stacking") -> None:
        self.uri = uri
        self.experiment = experiment

    def log(self, record: RunRecord) -> str:
        import mlflow

        previous = mlflow.get_tracking_uri() if self.uri else None
        if self.uri:
            mlflow.set_tracking_uri(self.uri)
        try:
            return self._log(mlflow, record)
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
            mlflow.log_artifacts(str(record.artifacts_dir))
            return run.info.run_id
