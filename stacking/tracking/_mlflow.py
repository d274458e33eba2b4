"""MLflow: one parent run per experiment, nested runs per base model and meta candidate.

Metric names follow docs/architecture.md: ``cv_<metric>`` for the chosen ensemble and
``base.<model>.cv_<metric>`` for each base model on the parent; each nested run has its
own ``cv_<metric>`` and per-fold ``fold_<metric>`` (step = fold). When the caller already
has an active run, the experiment is recorded into it instead of a competing one.

The parent run is tagged with this host and process id (``stacking.host``,
``stacking.pid``): :meth:`MlflowTracker.check` marks runs whose process died while
logging as KILLED, so no run stays RUNNING forever.
"""

from __future__ import annotations

import logging
import os
import tempfile
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml
from pydantic import Field

from stacking.config import TrackingConfig
from stacking.errors import OutputError, TrackingError
from stacking.tracking._base import RecordedRun, RunRecord, Tracker, register_tracker
from stacking.tracking._model import log_datasets, log_ensemble_model, params
from stacking.tracking._store import (
    CHECK_HTTP,
    HOST,
    LOG_HTTP,
    file_system_refusal,
    one_line,
    pid_alive,
    session,
    sqlite_path,
    store_lock,
)

log = logging.getLogger(__name__)
PARENT_FILTER = "tags.`stacking.data_digest` LIKE '%'"


def resolved_uri(uri: str | None) -> str:
    """The store runs go to: ``uri`` or MLflow's own default (``sqlite:///mlflow.db``)."""
    import mlflow

    return uri or mlflow.get_tracking_uri()


class MlflowTrackingConfig(TrackingConfig):
    """An MLflow tracking store (the default): MLflow's own default store, a SQLite file or
    a tracking server."""

    kind: Literal["mlflow"] = "mlflow"
    uri: str | None = Field(None, description="default: MLflow's own default store")
    experiment: str = Field("tf-stacking", description="MLflow experiment name")
    register_as: str | None = Field(
        None, description="register the ensemble model under this name (a new version)"
    )


@register_tracker(MlflowTrackingConfig)
class MlflowTracker(Tracker):
    """Records runs in an MLflow tracking store (a SQLite file or a tracking server)."""

    def __init__(
        self,
        uri: str | None = None,
        experiment: str = "tf-stacking",
        register_as: str | None = None,
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.register_as = register_as

    @classmethod
    def from_config(cls, cfg: MlflowTrackingConfig) -> MlflowTracker:
        return cls(uri=cfg.uri, experiment=cfg.experiment, register_as=cfg.register_as)

    def run_lines(self, run_id: str) -> list[str]:
        return [
            f"mlflow run: {run_id}",
            f"browse it:  mlflow ui --backend-store-uri {resolved_uri(self.uri)}",
        ]

    # -- helpers --------------------------------------------------------------------------
    def _fail(self, doing: str, exc: BaseException, fix: str) -> TrackingError:
        return TrackingError(
            f"cannot {doing} MLflow at {resolved_uri(self.uri)}: {one_line(exc)}; {fix}"
        )

    def _client(self) -> Any:  # an mlflow.MlflowClient
        import mlflow

        return mlflow.MlflowClient(tracking_uri=resolved_uri(self.uri))

    def _experiment_id(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(self.experiment)
        except MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    # -- the contract ---------------------------------------------------------------------
    def check(self) -> None:
        """Reach the store, write to it, and mark runs of dead processes KILLED."""
        uri = resolved_uri(self.uri)
        db = sqlite_path(uri)
        fresh = db is not None and not db.exists()
        try:
            with session(self.uri, CHECK_HTTP, force=True), store_lock(uri):
                client = self._client()
                experiment_id = self._experiment_id(client)
                # A write, so a read-only store fails now rather than after the computing.
                client.set_experiment_tag(experiment_id, "stacking.last_check", f"{HOST}")
                self._end_dead_runs(client, experiment_id)
        except TrackingError:
            raise
        except Exception as exc:
            refused = file_system_refusal(db) if db is not None else None
            if db is not None and fresh and db.is_file() and db.stat().st_size == 0:
                db.unlink(missing_ok=True)  # the empty file SQLite created before failing
            if db is not None and refused is not None:
                raise OutputError(
                    f"cannot write the MLflow store {str(db)!r}: {one_line(exc)}; the file "
                    f"system refused a write ({refused}); nothing was computed; free disk space, "
                    f"raise the file-size limit or make {str(db.parent)!r} writable, or point "
                    "tracking.uri elsewhere"
                ) from exc
            raise self._fail(
                "record the run in",
                exc,
                "nothing was computed; check tracking.uri, or set tracking.enabled: false",
            ) from exc

    def _end_dead_runs(self, client: Any, experiment_id: str) -> None:
        running = client.search_runs(
            [experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`stacking.host` = '{HOST}'",
            max_results=1000,
        )
        for run in running:
            pid = run.data.tags.get("stacking.pid", "")
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                client.set_terminated(run.info.run_id, status="KILLED")
                log.warning(
                    "marked MLflow run %s KILLED: its process %s ended while logging",
                    run.info.run_id,
                    pid,
                )

    def _end_dead_runs_if_writable(self, client: Any, experiment_id: str) -> None:
        """:meth:`_end_dead_runs` for commands that only read: a read-only store lists its
        runs as they are."""
        try:
            with store_lock(resolved_uri(self.uri)):
                self._end_dead_runs(client, experiment_id)
        except Exception as exc:  # reading must not fail on a tidy-up
            log.debug("could not mark dead runs KILLED: %s", one_line(exc))

    def log(self, record: RunRecord) -> str:
        import mlflow

        uri = resolved_uri(self.uri)
        try:
            with session(self.uri, LOG_HTTP):
                with store_lock(uri):
                    experiment_id = self._experiment_id(self._client())
                return self._log(mlflow, record, experiment_id)
        except TrackingError:
            raise
        except Exception as exc:
            raise self._fail(
                "record the run in",
                exc,
                f"the results are kept in {record.artifacts_dir}; record them later with "
                f"`stacking log {record.artifacts_dir}`",
            ) from exc

    def _log(self, mlflow: ModuleType, record: RunRecord, experiment_id: str) -> str:
        owner = {"stacking.host": HOST, "stacking.pid": str(os.getpid())}
        active = mlflow.active_run()
        if active is None:
            context = mlflow.start_run(
                experiment_id=experiment_id, run_name=record.name, tags=owner
            )
        else:
            context = nullcontext(active)
        with context as run:
            mlflow.log_params(params(record.params))
            mlflow.set_tags(record.tags)
            mlflow.log_metrics(record.metrics)
            log_datasets(mlflow, record.datasets)
            for child in record.children:
                with mlflow.start_run(
                    experiment_id=run.info.experiment_id,
                    run_name=child.name,
                    nested=True,
                    tags=owner,
                ):
                    mlflow.set_tags({**child.tags, "stacking.role": child.role})
                    if child.params:
                        mlflow.log_params(params(child.params))
                    mlflow.log_metrics(child.metrics)
                    for name, values in child.fold_metrics.items():
                        for k, value in enumerate(values):
                            mlflow.log_metric(f"fold_{name}", value, step=k)
            mlflow.log_artifacts(str(record.artifacts_dir))
            if record.model_dir is not None:
                log_ensemble_model(mlflow, record.model_dir, record.model_example, self.register_as)
            return run.info.run_id

    def resolve_run_id(self, client: Any, run_id: str) -> str:
        """The full id of ``run_id`` or of the one run whose id starts with it (``stacking
        runs`` shows 12 characters); a ``TrackingError`` naming the matches when several do,
        or naming the store when none does."""
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(run_id).info.run_id
        except MlflowException:
            if not run_id or len(run_id) >= 32:
                raise
        experiments = [e.experiment_id for e in client.search_experiments()]
        matches = sorted(
            {
                run.info.run_id
                for run in client.search_runs(
                    experiments, filter_string=PARENT_FILTER, max_results=50000
                )
                if run.info.run_id.startswith(run_id)
            }
        )
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise TrackingError(
                f"run id {run_id!r} is ambiguous in {resolved_uri(self.uri)}: it starts "
                f"{len(matches)} runs ({', '.join(matches[:5])}); give more characters"
            )
        raise TrackingError(
            f"no run {run_id!r} in {resolved_uri(self.uri)}; copy an id from "
            "`stacking runs --tracking-uri URI`, or check --tracking-uri"
        )

    def fetch_run(self, run_id: str) -> RecordedRun:
        try:
            with session(self.uri, CHECK_HTTP, force=True):
                client = self._client()
                run_id = self.resolve_run_id(client, run_id)
                run = client.get_run(run_id)
                with tempfile.TemporaryDirectory() as tmp:
                    path = client.download_artifacts(run_id, "config.resolved.yaml", tmp)
                    config = yaml.safe_load(Path(path).read_text())
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"cannot read run {run_id!r} from {resolved_uri(self.uri)}: {one_line(exc)}; "
                "check the run id and --tracking-uri"
            ) from exc
        return _recorded(run, config)

    def download_model(self, uri: str) -> Path:
        import mlflow

        try:
            with session(self.uri, LOG_HTTP):
                uri = self._full_run_uri(uri)
                client = self._client()
                for experiment in client.search_experiments():
                    self._end_dead_runs_if_writable(client, experiment.experiment_id)
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=uri, tracking_uri=resolved_uri(self.uri)
                    )
                )
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"cannot fetch MLflow model {uri!r} from {resolved_uri(self.uri)}: "
                f"{one_line(exc)}; check the model URI and --tracking-uri"
            ) from exc
        predictor = local / "artifacts" / "predictor"
        if not predictor.is_dir():
            raise TrackingError(
                f"{uri!r} is not a tf-stacking ensemble model (no artifacts/predictor in it); "
                "pass the URI of a run's `ensemble` model"
            )
        return predictor

    def _full_run_uri(self, uri: str) -> str:
        """``runs:/<short id>/path`` with the run's full id (a unique prefix is accepted)."""
        if not uri.startswith("runs:/"):
            return uri
        run_id, sep, rest = uri.removeprefix("runs:/").partition("/")
        return f"runs:/{self.resolve_run_id(self._client(), run_id)}{sep}{rest}"

    def experiments_with_runs(self) -> dict[str, int]:
        """``{experiment name: number of tf-stacking runs}`` of the store, for a hint when
        the asked experiment has none."""
        try:
            with session(self.uri, CHECK_HTTP, force=True):
                client = self._client()
                counts = {}
                for experiment in client.search_experiments():
                    found = client.search_runs(
                        [experiment.experiment_id], filter_string=PARENT_FILTER, max_results=1000
                    )
                    if found:
                        counts[experiment.name] = len(found)
        except Exception as exc:
            raise self._fail("list the experiments of", exc, "check --tracking-uri") from exc
        return counts

    def runs(self, max_results: int = 20) -> list[RecordedRun]:
        try:
            with session(self.uri, CHECK_HTTP, force=True):
                client = self._client()
                experiment = client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    return []
                self._end_dead_runs_if_writable(client, experiment.experiment_id)
                found = client.search_runs(
                    [experiment.experiment_id],
                    filter_string=PARENT_FILTER,
                    order_by=["attributes.start_time DESC"],
                    max_results=max_results,
                )
        except Exception as exc:
            raise self._fail("list runs of", exc, "check --tracking-uri") from exc
        return [_recorded(run, None) for run in found]


def _recorded(run: Any, config: dict | None) -> RecordedRun:
    return RecordedRun(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        start_time=int(run.info.start_time or 0),
        status=run.info.status,
        config=config,
        tags=dict(run.data.tags),
        metrics=dict(run.data.metrics),
    )
