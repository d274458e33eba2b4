"""``stacking.json``: what a fold-model directory was trained with.

Written by :func:`stacking.train_fold_models` (or by :func:`write_manifest` for fold
models trained elsewhere on an exported ``folds.csv``). It records the fold-plan digest
so that the framework can refuse fold models trained on a different split: with another
split, fold model *k* may have trained on rows of this experiment's fold *k*.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stacking.errors import BaseModelError

MANIFEST = "stacking.json"
FORMAT_VERSION = 1
_REQUIRED = ("n_splits", "folds_digest", "format", "task")


def write_manifest(
    directory: str | Path,
    *,
    fold_plan,
    task: str,
    classes: list | None = None,
    format: str = "keras",
    outputs_are: str = "auto",
    has_full: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``stacking.json`` for fold models trained with ``fold_plan``.

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
        **(extra or {}),
    }
    path = directory / MANIFEST
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".stacking.json.")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, path)
    return path


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
