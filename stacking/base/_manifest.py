"""``stacking.json``: what a fold-model directory was trained with.

Written by :func:`stacking.train_fold_models` (or by :func:`write_manifest` for fold
models trained elsewhere on an exported ``folds.csv``). It records the fold-plan digest
so that the framework can refuse fold models trained on a different split: with another
split, fold model *k* may have trained on rows of this experiment's fold *k*.

It also records the sha256 of every fold and full model file (``files``; a SavedModel
folder's digest covers all its files), so a model swapped or replaced after training is
refused. Manifests written before hashes existed still load, unchecked.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacking.base._base import is_model
from stacking.base._digest import path_digest
from stacking.errors import BaseModelError

if TYPE_CHECKING:  # not at run time: loading a model needs no fold machinery
    from stacking.folds import FoldPlan

MANIFEST = "stacking.json"
FORMAT_VERSION = 1
_REQUIRED = ("n_splits", "folds_digest", "format", "task")


def write_manifest(
    directory: str | Path,
    *,
    fold_plan: FoldPlan,
    task: str,
    classes: list | None = None,
    format: str = "keras",
    outputs_are: str = "auto",
    has_full: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``stacking.json`` for fold models trained with ``fold_plan``, with the
    sha256 of every ``fold_k`` / ``full`` model present in ``directory``.

    >>> write_manifest("models/cnn", fold_plan=plan, task="multiclass", classes=[0, 1, 2])
    """
    import keras

    directory = Path(directory)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": "tf-stacking",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_splits": fold_plan.n_splits,
        "folds_digest": fold_plan.digest,
        "format": format,
        "task": task,
        "classes": [str(c) for c in (classes or [])],
        "outputs_are": outputs_are,
        "has_full": has_full,
        "keras_version": keras.__version__,
        "files": model_digests(directory),
        **(extra or {}),
    }
    path = directory / MANIFEST
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".stacking.json.")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, path)
    return path


def fold_model_files(directory: Path) -> list[Path]:
    """The ``fold_k`` and ``full`` models (files or SavedModel folders) in ``directory``."""
    return sorted(
        p
        for p in Path(directory).iterdir()
        if (p.name.startswith("fold_") or p.stem == "full" or p.name == "full") and is_model(p)
    )


def model_digests(directory: Path) -> dict[str, str]:
    """sha256 of every fold and full model in ``directory``, by file or folder name."""
    return {p.name: path_digest(p) for p in fold_model_files(directory)}


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BaseModelError(f"cannot read manifest {str(path)!r}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BaseModelError(
            f"manifest {str(path)!r} holds {type(manifest).__name__} {manifest!r:.40}, not a "
            "JSON object; rewrite it with stacking.write_manifest"
        )
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise BaseModelError(
            f"manifest {str(path)!r} lacks {missing}; rewrite it with stacking.write_manifest"
        )
    return manifest


def check_model_files(manifest: dict[str, Any], paths: list[Path]) -> dict[str, str] | None:
    """Each path's status against the manifest's hashes: "ok", "differs" or
    "not recorded"; None for an older manifest without hashes (nothing to check)."""
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return None
    status = {}
    for p in paths:
        if p.name not in recorded:
            status[p.name] = "not recorded"
        else:
            status[p.name] = "ok" if path_digest(p) == recorded[p.name] else "differs"
    return status


def verify_model_files(
    name: str, directory: Path, manifest: dict[str, Any], paths: Iterable[Path]
) -> None:
    """Refuse a model file that is not the one the manifest recorded (swapped, replaced)."""
    status = check_model_files(manifest, list(paths)) or {}
    for file, state in status.items():
        if state != "ok":
            why = "differs from" if state == "differs" else "is not in"
            raise BaseModelError(
                f"base model {name!r}: {str(directory / file)!r} {why} the file recorded in "
                f"{MANIFEST} (sha256); it was replaced or swapped after training. Restore "
                "it, retrain with stacking.train_fold_models, or rewrite the manifest with "
                "stacking.write_manifest if the change is intended"
            )
