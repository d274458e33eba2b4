"""MLflow for runs over several seeds: a parent run holding one nested run per seed, and
reading finished runs back with the files ``stacking compare`` needs.

A seed's run is an ordinary experiment run: :meth:`MlflowTracker.log` joins the active
run, so the experiment is recorded into the nested run :func:`seed_run` opens, with its
own base and meta runs nested under it. The parent records the config and the seed list
and carries no scores of its own (it has no ``stacking.data_digest`` tag, so ``stacking
runs`` and ``stacking compare --experiment`` list the seeds' runs, not the parent).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacking.errors import DataFileNotFoundError, TrackingError
from stacking.tracking._mlflow import PARENT_FILTER, MlflowTracker, resolved_uri
from stacking.tracking._store import CHECK_HTTP, HOST, LOG_HTTP, one_line, session, store_lock

# What `stacking compare` reads of every run: the config, and the OOF predictions of every
# entry (base models' in oof.parquet, the meta candidates' and the selected one's in
# meta_oof.parquet).
COMPARED_FILES = ("config.resolved.yaml", "oof.parquet", "meta_oof.parquet")


@dataclass
class StoredRun:
    """A finished run read back for comparison: its tags, metrics and files in ``folder``."""

    run_id: str
    name: str
    start_time: int
    tags: dict[str, str]
    metrics: dict[str, float]
    folder: Path


def _owner() -> dict[str, str]:
    """The tags that let :meth:`MlflowTracker.check` end runs of a killed process."""
    return {"stacking.host": HOST, "stacking.pid": str(os.getpid())}


@contextmanager
def seeds_parent(
    tracker: MlflowTracker, name: str, config: dict[str, Any], seeds: list[int], digest: str
) -> Iterator[str]:
    """Open the parent run of a run over ``seeds``; yields its id. It ends FINISHED, or
    FAILED when a seed's run raised."""
    import mlflow

    tracker.check()
    try:
        with session(tracker.uri, LOG_HTTP), store_lock(resolved_uri(tracker.uri)):
            experiment_id = tracker._experiment_id(tracker._client())
    except Exception as exc:
        raise TrackingError(
            f"cannot open the parent run in MLflow at {resolved_uri(tracker.uri)}: "
            f"{one_line(exc)}; check tracking.uri, or set tracking.kind: none"
        ) from exc
    tags = {**_owner(), "stacking.role": "seeds", "stacking.config_digest": digest}
    with (
        session(tracker.uri, LOG_HTTP),
        mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run,
    ):
        mlflow.log_params({"seeds": ",".join(str(s) for s in seeds), "n_seeds": len(seeds)})
        mlflow.log_dict(config, "config.resolved.yaml")
        yield run.info.run_id


@contextmanager
def seed_run(tracker: MlflowTracker, name: str, seed: int, digest: str) -> Iterator[str]:
    """A nested run of the active parent for one seed; the experiment logs into it."""
    import mlflow

    tags = {**_owner(), "stacking.seed": str(seed), "stacking.config_digest": digest}
    with session(tracker.uri, LOG_HTTP):
        parent = mlflow.active_run()
        experiment_id = parent.info.experiment_id if parent is not None else None
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=name, nested=True, tags=tags
        ) as run:
            mlflow.log_param("seed", seed)
            yield run.info.run_id


def fetch_compared_runs(
    tracker: MlflowTracker, run_ids: list[str], dest: Path, *, experiment: bool = False
) -> list[StoredRun]:
    """The finished tf-stacking runs ``run_ids`` (``experiment``: every finished one of the
    tracker's experiment, oldest first), each with :data:`COMPARED_FILES` under ``dest``."""
    try:
        with session(tracker.uri, CHECK_HTTP, force=True):
            client = tracker._client()
            if experiment:
                runs = _experiment_runs(tracker, client)
            else:
                runs = [client.get_run(tracker.resolve_run_id(client, r)) for r in run_ids]
            return [_download(client, run, dest) for run in runs]
    except (TrackingError, DataFileNotFoundError):
        raise
    except Exception as exc:
        raise TrackingError(
            f"cannot read runs from MLflow at {resolved_uri(tracker.uri)}: {one_line(exc)}; "
            "check the run ids and --tracking-uri"
        ) from exc


def _experiment_runs(tracker: MlflowTracker, client: Any) -> list[Any]:
    found = client.get_experiment_by_name(tracker.experiment)
    if found is None:
        raise TrackingError(
            f"no experiment {tracker.experiment!r} in {resolved_uri(tracker.uri)}; "
            "`stacking runs --experiment NAME` lists runs by experiment"
        )
    return list(
        client.search_runs(
            [found.experiment_id],
            filter_string=f"{PARENT_FILTER} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"],
            max_results=5000,
        )
    )


def _download(client: Any, run: Any, dest: Path) -> StoredRun:
    run_id = run.info.run_id
    if "stacking.data_digest" not in run.data.tags:
        raise TrackingError(
            f"run {run_id} is not a tf-stacking experiment run (no stacking.data_digest tag); "
            "pass the runs of the seeds, not their parent (`stacking runs` lists them)"
        )
    folder = dest / run_id
    folder.mkdir(parents=True, exist_ok=True)
    listed = {a.path for a in client.list_artifacts(run_id)}
    missing = [name for name in COMPARED_FILES if name not in listed]
    if missing:
        raise DataFileNotFoundError(
            f"run {run_id} has no {', '.join(missing)} artifact; it was recorded by an older "
            "tf-stacking or without its results folder: re-run it (`stacking reproduce "
            f"{run_id}`) and compare the new run"
        )
    for name in COMPARED_FILES:
        client.download_artifacts(run_id, name, str(folder))
    return StoredRun(
        run_id=run_id,
        name=run.info.run_name or "",
        start_time=int(run.info.start_time or 0),
        tags=dict(run.data.tags),
        metrics=dict(run.data.metrics),
        folder=folder,
    )
