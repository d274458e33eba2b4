"""The results directory: the files of docs/architecture.md, written whole or not at all.

``write_partial`` writes everything into ``.<name>.partial`` beside the target folder
(with a ``.writer`` file naming this host and process) and :func:`move_into_place` renames
it when complete, so a failed run leaves nothing behind; :func:`remove_orphans` deletes
``.partial`` folders whose writer died. The run is recorded from the finished folder
afterwards, so a tracking failure never loses it (``stacking log RESULTS_DIR``).
Disk faults are an :class:`~stacking.errors.OutputError` of one line.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import yaml

from stacking.base import ResolvedBaseModel
from stacking.data import Dataset, resolve_columns, table_digest
from stacking.errors import DataError, OutputError
from stacking.evaluate import Entry
from stacking.folds import FoldPlan
from stacking.level1 import Level1, block_names
from stacking.metrics import (
    CALIBRATION_BINS,
    calibration_bin_index,
    confidence_and_hit,
    get_metric,
    pairwise_correlation,
    pairwise_disagreement,
)
from stacking.predictor import EnsemblePredictor, prediction_frame


def default_dir(name: str) -> Path:
    """``runs/<name>-<timestamp>`` in the working folder."""
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


WRITER = ".writer"
_ORPHAN_AGE = 3600  # seconds: a .partial folder without a writer file is then abandoned


def check_output_dir(out: Path) -> Path:
    """Refuse a results folder that holds something (nothing is overwritten) or that
    cannot be written: checked before computing, so no work is lost at the end."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output directory {str(out)!r} {_holds(out)}")
    existing = next(p for p in [out, *out.parents] if p.exists() or p == Path(p.anchor))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{str(existing)!r} is a file")
        with tempfile.TemporaryFile(dir=existing, prefix=".stacking-probe-"):
            pass
    except OSError as exc:
        reason = _reason(exc)
        raise OutputError(
            f"output directory {str(out)!r} cannot be written ({reason}: {str(existing)!r}); "
            "choose another --output or make the folder writable"
        ) from exc
    return out


def _holds(out: Path) -> str:
    """What a non-empty results folder holds, and what to do about it: a run killed while
    it was being recorded left a complete folder that ``stacking log`` records."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
        complete = (out / "config.resolved.yaml").is_file() and "ensemble" in metrics
    except (OSError, ValueError, TypeError):
        complete, metrics = False, {}
    if not complete:
        return "is not empty; choose another --output"
    if metrics.get("run_id"):
        return (
            f"holds a finished run, recorded as MLflow run {metrics['run_id']}; choose another "
            "--output"
        )
    return (
        "holds a finished run that was never recorded in MLflow (its process ended before "
        f"that, or tracking was off); record it with `stacking log {out}`, or choose another "
        "--output"
    )


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _writer_gone(folder: Path) -> bool:
    writer = folder / WRITER
    try:
        host, pid = writer.read_text().split()
    except (OSError, ValueError):
        return time.time() - folder.stat().st_mtime > _ORPHAN_AGE
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def remove_orphans(runs_dir: Path) -> list[Path]:
    """Delete ``.<name>.partial`` folders under ``runs_dir`` whose writer process is gone
    (killed mid-write); folders of live writers are left alone. Returns what was removed."""
    removed: list[Path] = []
    if not runs_dir.is_dir():
        return removed
    for folder in runs_dir.glob(".*.partial"):
        try:
            if folder.is_dir() and _writer_gone(folder):
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError:  # vanished meanwhile, or not ours to delete
            continue
    return removed


def oof_frame(data: Dataset, plan: FoldPlan, level1: Level1) -> pd.DataFrame:
    """``oof.parquet``: id, ``fold``, target column(s), then the level-1 features."""
    head = pd.DataFrame({data.id_column: data.ids, "fold": plan.folds})
    targets = data.train[data.target_columns].reset_index(drop=True)
    return pd.concat([head, targets, level1.features], axis=1)


def test_frame(
    data: Dataset, level1: Level1, ensemble_test: np.ndarray | None
) -> pd.DataFrame | None:
    """``test_predictions.parquet``: id, level-1 test features, the ensemble's output."""
    if data.test is None or ensemble_test is None:
        return None
    predictions = prediction_frame(
        ensemble_test, task=data.task, classes=data.classes, output_names=data.output_names()
    )
    head = pd.DataFrame({data.id_column: data.test_ids})
    return pd.concat([head, level1.test_features, predictions], axis=1)


def model_example(
    data: Dataset, predictor: EnsemblePredictor, test_predictions: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A few input rows and the ensemble's output for them: the served model's signature.

    The rows hold only the id and the columns the base models' views read (never the
    target, weight or fold columns), so unlabeled rows fit the signature.
    """
    frame = data.test if test_predictions is not None and data.test is not None else data.train
    needed: list[str] = []
    stack = predictor.stack  # the FittedStack holds the recipes
    frame = _with_given_columns(frame.head(5), stack.base_models, test=frame is data.test)
    for recipe in stack.base_models:
        for view in recipe.views:
            spec = view if isinstance(view, dict) else view.model_dump()
            if spec.get("columns") is not None:
                needed += resolve_columns(frame, spec["columns"], source="the example rows")
            needed += [spec[k] for k in ("image", "text") if isinstance(spec.get(k), str)]
    columns = [c for c in frame.columns if c == data.id_column or c in set(needed)]
    rows = frame.head(5)[columns].reset_index(drop=True)
    if test_predictions is not None:
        ensemble = [c for c in test_predictions.columns if c.startswith("ensemble__")]
        output = test_predictions.head(5)[[data.id_column, *ensemble, "prediction"]]
        return rows, output.reset_index(drop=True)
    return rows, predictor.predict(rows)


def _with_given_columns(
    rows: pd.DataFrame, recipes: list[ResolvedBaseModel], *, test: bool
) -> pd.DataFrame:
    """``rows`` with each prediction-file member's served columns: its predictions of
    these rows (rows to serve carry them, as the member has no model)."""
    rows = rows.reset_index(drop=True)
    for recipe in recipes:
        files = recipe.predictions
        if files is None:
            continue
        values = files.test if test else files.oof
        assert values is not None  # a run reads both files of a member it serves
        columns = cast(list[str], recipe.views[0].columns)  # resolved names, not a glob
        given = pd.DataFrame(values[: len(rows)], columns=columns)
        rows = pd.concat([rows, given], axis=1)
    return rows


def _table_info(frame: pd.DataFrame, source: str, digest: str) -> dict:
    return {
        "source": source,
        "digest": digest,
        "n_rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
    }


def datasets_info(data: Dataset) -> dict:
    """Each table's source, full-content digest, rows and column types (for MLflow)."""
    info = {"training": _table_info(data.train, data.source.get("train", "train"), data.digest)}
    if data.test is not None:
        info["test"] = _table_info(
            data.test, data.source.get("test", "test"), table_digest(data.test)
        )
    return info


def provenance() -> dict:
    """The git commit of the working folder (when it is a checkout) and library versions."""
    versions = {"python": platform.python_version()}
    for name in ["tensorflow", "keras", "scikit-learn", "mlflow", "tf-stacking"]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        commit = done.stdout.strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"git_commit": commit, "versions": versions}


def metrics_json(
    data: Dataset,
    plan: FoldPlan,
    entries: list[Entry],
    ensemble: Entry,
    metric_names: list[str],
    board: pd.DataFrame,
) -> dict:
    """``metrics.json``: directions, digests, and every entry's overall and fold scores."""
    metrics = [get_metric(m) for m in metric_names]
    return {
        "task": data.task,
        "primary_metric": metrics[0].name,
        "directions": {m.name: ("higher" if m.greater_is_better else "lower") for m in metrics},
        "ensemble": ensemble.name,
        "best_base": board[board.role == "base"].iloc[0]["model"],
        "data_digest": data.digest,
        "folds_digest": plan.digest,
        "n_rows": len(data.ids),
        "n_splits": plan.n_splits,
        "entries": {
            e.name: {
                "role": e.role,
                "level": e.level,
                "scores": e.scores,
                "fold_scores": e.fold_scores,
            }
            for e in entries
        },
        "leaderboard": json.loads(board.to_json(orient="records")),
        "datasets": datasets_info(data),
        "provenance": provenance(),
    }


def prediction_digests(recipes: list[ResolvedBaseModel]) -> dict[str, dict[str, str]]:
    """The sha256 of every prediction-file member's files, by member and file role
    (``oof``, ``test``): recorded with the run and checked again by ``reproduce``."""
    return {r.name: dict(r.predictions.digests) for r in recipes if r.predictions is not None}


def write_partial(
    out: Path,
    *,
    config: dict,
    data: Dataset,
    plan: FoldPlan,
    oof: pd.DataFrame,
    test_frame: pd.DataFrame | None,
    board: pd.DataFrame,
    weights: pd.DataFrame,
    metrics: dict,
    entries: list[Entry],
    predictor: EnsemblePredictor,
) -> Path:
    """Write every result file into ``.<out>.partial`` and return that folder.

    A disk fault (read-only, full, file-size limit) removes the folder and is an
    :class:`~stacking.errors.OutputError` of one line.
    """
    tmp = out.parent / f".{out.name}.partial"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / WRITER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        _write_files(tmp, config, data, plan, oof, test_frame, board, weights, metrics, entries)
        predictor.save(tmp / "ensemble")
        rows, output = model_example(data, predictor, test_frame)
        rows.to_parquet(tmp / "ensemble" / "example_input.parquet", index=False)
        output.to_parquet(tmp / "ensemble" / "example_output.parquet", index=False)
        (tmp / WRITER).unlink()
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"cannot write the results folder {str(out)!r}: {_reason(exc)}; free space, "
            "raise the file-size limit or choose another --output (cached predictions are kept)"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as parquet, dictionary-encoding only the columns that are not floats.

    Level-1 probabilities are (nearly) all distinct: a dictionary for them is built, found
    too large and thrown away, which made the OOF tables' writes take 2.3x as long and
    their files a third larger. The values read back are the same either way.
    """
    dictionary = [str(c) for c, t in frame.dtypes.items() if not pd.api.types.is_float_dtype(t)]
    frame.to_parquet(path, index=False, use_dictionary=dictionary)


def _write_files(
    tmp: Path,
    config: dict,
    data: Dataset,
    plan: FoldPlan,
    oof: pd.DataFrame,
    test_frame: pd.DataFrame | None,
    board: pd.DataFrame,
    weights: pd.DataFrame,
    metrics: dict,
    entries: list[Entry],
) -> None:
    """The tables and files of the results directory of docs/architecture.md."""
    write_table(oof, tmp / "oof.parquet")
    meta = pd.DataFrame({data.id_column: data.ids, "fold": plan.folds})
    for e in entries:  # the selected entry too when it is a base model (stacking compare)
        if e.role != "base" or e.name == metrics["ensemble"]:
            cols = block_names(e.name, data, drop_redundant=False)
            meta[cols] = np.asarray(e.oof).reshape(len(meta), -1)
    write_table(meta, tmp / "meta_oof.parquet")
    if test_frame is not None:
        write_table(test_frame, tmp / "test_predictions.parquet")
    board.to_csv(tmp / "leaderboard.csv", index=False)
    bases = [e for e in entries if e.role == "base"]
    if len(bases) >= 2:
        diversity_frame(bases, data.task).to_csv(tmp / "diversity.csv", index=False)
    if data.task in ("binary", "multiclass"):
        calibration = calibration_frame(entries, data.y, data.task, data.sample_weight)
        calibration.to_csv(tmp / "calibration.csv", index=False)
    weights.to_csv(tmp / "weights.csv", index=False)
    plan.save(tmp / "folds.csv", id_column=data.id_column)
    (tmp / "config.resolved.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))


def move_into_place(tmp: Path, out: Path) -> Path:
    """Rename the finished ``.partial`` folder to ``out`` (an empty ``out`` is replaced)."""
    try:
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except OSError as exc:
        raise OutputError(
            f"cannot move the finished results {str(tmp)!r} to {str(out)!r}: "
            f"{_reason(exc)}; rename it by hand"
        ) from exc
    return out


def update_metrics(out: Path, **fields: Any) -> dict:
    """Add ``fields`` to ``out/metrics.json`` (e.g. the run id once recorded), atomically."""
    path = out / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(fields)
    tmp = path.with_name(".metrics.json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, default=float))
    tmp.replace(path)
    return metrics


def diversity_frame(bases: list[Entry], task: str) -> pd.DataFrame:
    """``diversity.csv``: one row per pair of base models, the Pearson correlation of their
    OOF predictions (averaged over outputs) and the share of rows where their predicted
    labels differ (``disagreement``; empty for regression)."""
    names = [b.name for b in bases]
    corr = pairwise_correlation([np.asarray(b.oof) for b in bases])
    if task == "regression":
        disagree = np.full(corr.shape, np.nan)
    elif task == "multilabel":
        disagree = pairwise_disagreement([np.asarray(b.oof) >= 0.5 for b in bases])
    else:
        disagree = pairwise_disagreement([np.argmax(b.oof, axis=1) for b in bases])
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    return pd.DataFrame(
        {
            "model_a": [names[i] for i, _ in pairs],
            "model_b": [names[j] for _, j in pairs],
            "correlation": [corr[i, j] for i, j in pairs],
            "disagreement": [disagree[i, j] for i, j in pairs],
        }
    )


def calibration_frame(
    entries: list[Entry], y: np.ndarray, task: str, sample_weight: np.ndarray | None = None
) -> pd.DataFrame:
    """``calibration.csv``: every leaderboard entry's reliability table over the ``ece``
    metric's equal-width bins. ``share`` is the bin's (weighted) share of rows, so an
    entry's ``ece`` is the sum of ``share * |mean_confidence - observed|``."""
    n_bins = CALIBRATION_BINS
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    frames = []
    for e in entries:
        conf, hit = confidence_and_hit(y, e.oof, task)
        bins = calibration_bin_index(conf, n_bins)
        weight = np.bincount(bins, weights=w, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_conf = np.bincount(bins, weights=w * conf, minlength=n_bins) / weight
            observed = np.bincount(bins, weights=w * hit, minlength=n_bins) / weight
        frames.append(
            pd.DataFrame(
                {
                    "model": e.name,
                    "bin": np.arange(n_bins),
                    "lower": np.arange(n_bins) / n_bins,
                    "upper": np.arange(1, n_bins + 1) / n_bins,
                    "rows": np.bincount(bins, minlength=n_bins),
                    "share": weight / w.sum(),
                    "mean_confidence": mean_conf,
                    "observed": observed,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
