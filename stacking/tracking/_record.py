"""From a finished results folder to a tracked run: the one path of ``run`` and ``log``.

>>> tracker = get_tracker(config.tracking)
>>> out = preflight(tracker, Path("runs/x"))   # before computing: fails in seconds
>>> ...                                         # compute, write and move the folder
>>> run_id = log_results(tracker, out)          # record it; metrics.json gets run_id

:func:`record_from_results` reads only the folder (``metrics.json``,
``config.resolved.yaml``, ``leaderboard.csv``, ``ensemble/``), so a folder whose recording
failed is recorded later, unchanged, by ``stacking log RESULTS_DIR``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stacking import results
from stacking.base import digest_tag
from stacking.errors import DataError, DataFileNotFoundError, first_line
from stacking.evaluate import repeat_spread
from stacking.tracking._base import ChildRecord, DatasetRecord, RunRecord, Tracker

_NEEDED = ("metrics.json", "config.resolved.yaml")


def preflight(tracker: Tracker, out: Path) -> Path:
    """Everything about the outputs that can fail, checked before any computing.

    The results folder must be empty and writable; orphaned ``.partial`` folders of dead
    writers beside it are removed; the tracker's store must answer and accept writes
    (:meth:`Tracker.check`, which also marks runs of killed processes KILLED).
    """
    out = results.check_output_dir(Path(out))
    results.remove_orphans(out.parent)
    tracker.check()
    return out


def _read(folder: Path) -> tuple[dict, dict]:
    missing = [name for name in _NEEDED if not (folder / name).is_file()]
    if missing:
        raise DataFileNotFoundError(
            f"{str(folder)!r} is not a finished results folder: it has no {', '.join(missing)}; "
            "pass the folder a `stacking run` wrote (runs/<name>-<timestamp>)"
        )
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    except (ValueError, yaml.YAMLError) as exc:
        raise DataError(
            f"{str(folder)!r} holds an unreadable metrics.json or config.resolved.yaml: "
            f"{first_line(exc)}; re-run the experiment"
        ) from exc
    return metrics, config


def _tags(metrics: dict, names: list[str]) -> dict[str, str]:
    tags = {
        "stacking.data_digest": metrics["data_digest"],
        "stacking.folds_digest": metrics["folds_digest"],
        "stacking.task": metrics["task"],
        "stacking.ensemble": metrics["ensemble"],
        "stacking.primary_metric": metrics["primary_metric"],
        **{f"stacking.direction.{m}": metrics["directions"][m] for m in names},
    }
    prov = metrics.get("provenance") or {}
    if prov.get("git_commit"):
        tags["stacking.git_commit"] = prov["git_commit"]
        tags["mlflow.source.git.commit"] = prov["git_commit"]
    for name, version in (prov.get("versions") or {}).items():
        tags[f"stacking.version.{name}"] = str(version)
    for name, digests in (metrics.get("prediction_files") or {}).items():
        for role, digest in digests.items():  # as a fold model's hash, per file
            tags[digest_tag(name, role)] = digest
    tags.update({k: str(v) for k, v in (metrics.get("tags") or {}).items()})
    return tags


def _base_params(spec: dict, metrics: dict, name: str) -> dict:
    """A base model's nested-run params: its path, or its prediction files and their
    sha256 (a prediction-file member has no model file)."""
    if not spec.get("predictions"):
        return {"path": str(spec["path"])}
    digests = (metrics.get("prediction_files") or {}).get(name, {})
    params = {}
    for role, path in spec["predictions"].items():
        if path is not None:
            params[f"predictions.{role}"] = str(path)
            params.update({f"predictions.{role}_sha256": digests[role]} if role in digests else {})
    return params


def _test_metrics(folder: Path, ensemble: str) -> dict[str, float]:
    """``test_<metric>`` of the chosen ensemble when the leaderboard has holdout columns,
    and its cost (base models used, parameters, FLOPs per row, seconds per 1,000 rows) with
    meta.cost."""
    path = folder / "leaderboard.csv"
    if not path.is_file():
        return {}
    board = pd.read_csv(path)
    rows = board[board["model"] == ensemble]
    if rows.empty:
        return {}
    row = rows.iloc[0]
    cost = ("n_models_used", "n_params", "flops_per_row", "seconds_per_1k_rows")  # meta.cost
    return {
        c: float(row[c])
        for c in board.columns
        if (c.startswith("test_") or c in cost) and pd.notna(row[c])
    }


def _example(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    inputs, outputs = folder / "example_input.parquet", folder / "example_output.parquet"
    if inputs.is_file() and outputs.is_file():
        return pd.read_parquet(inputs), pd.read_parquet(outputs)
    return None


def record_from_results(folder: str | Path) -> RunRecord:
    """The :class:`RunRecord` of a finished results folder (parent, children, datasets)."""
    folder = Path(folder)
    metrics, config = _read(folder)
    names = list(metrics["directions"])
    entries = metrics["entries"]
    ensemble = metrics["ensemble"]
    parent = {f"cv_{m}": entries[ensemble]["scores"][m] for m in names}
    parent.update(_test_metrics(folder, ensemble))
    parent.update((metrics.get("selected_nested") or {}).get("scores") or {})
    for m, values in (entries[ensemble].get("repeat_scores") or {}).items():
        parent[f"cv_{m}_repeat_mean"] = float(np.mean(values))
        parent[f"cv_{m}_repeat_std"] = repeat_spread(values)
    children = []
    for name, entry in entries.items():
        if entry["role"] == "base":
            parent.update({f"base.{name}.cv_{m}": entry["scores"][m] for m in names})
        if entry["role"] == "base_mean":
            continue
        child_params: dict = {"level": entry["level"]}
        if entry["role"] == "base":
            child_params.update(_base_params(config["base_models"][name], metrics, name))
        children.append(
            ChildRecord(
                name=name,
                role="meta" if entry["role"] == "meta" else "base",
                params=child_params,
                metrics={f"cv_{m}": entry["scores"][m] for m in names},
                fold_metrics={m: entry["fold_scores"][m] for m in names},
            )
        )
    tracking = config.get("tracking") or {}
    model_dir = folder / "ensemble"
    return RunRecord(
        name=tracking.get("run_name") or config.get("name") or folder.name,
        params=config,
        metrics=parent,
        tags=_tags(metrics, names),
        children=children,
        artifacts_dir=folder,
        model_dir=model_dir if model_dir.is_dir() else None,
        model_example=_example(model_dir),
        datasets=[
            DatasetRecord(context=context, **info)
            for context, info in (metrics.get("datasets") or {}).items()
        ],
    )


def log_results(
    tracker: Tracker, folder: str | Path, tags: dict[str, str] | None = None
) -> str | None:
    """Record a finished results folder; write the run id into its ``metrics.json``.

    ``tags`` (e.g. ``stacking.reproduces``) are kept in ``metrics.json`` first, so a later
    ``stacking log`` of the same folder records them too. Returns the run id, or ``None``
    when the tracker stores nothing.
    """
    folder = Path(folder)
    if tags:
        previous = json.loads((folder / "metrics.json").read_text()).get("tags") or {}
        results.update_metrics(folder, tags={**previous, **tags})
    run_id = tracker.log(record_from_results(folder))
    if run_id is not None:
        results.update_metrics(folder, run_id=run_id)
    return run_id
