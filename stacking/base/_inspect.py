"""What ``stacking inspect PATH`` shows: a model's format, kind, inputs, outputs, layers,
its folder's manifest and whether the model files still match the manifest's hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacking.base._base import get_loader, is_model
from stacking.base._manifest import MANIFEST, check_model_files, fold_model_files, read_manifest
from stacking.errors import BaseModelError, DataFileNotFoundError


def _hash_summary(status: dict[str, str] | None, manifest: dict | None) -> str:
    if manifest is None:
        return "no manifest"
    if status is None:
        return f"not checked: {MANIFEST} was written before per-file hashes were recorded"
    bad = sorted(name for name, state in status.items() if state != "ok")
    return "match" if not bad else f"DIFFER: {bad} (replaced or swapped since training)"


def inspect_model(path: str | Path, *, custom_objects: list[str] | None = None) -> dict[str, Any]:
    """Describe a model file, a SavedModel folder or a fold-model directory (its
    ``fold_0`` model stands for all folds). Never refuses a multi-output model.

    Given the directory's ``stacking.json`` itself, only the manifest and the model files'
    hashes are shown: no model is loaded, so TensorFlow is not imported (about a second
    instead of ten).

    >>> inspect_model("models/cnn")["hashes"]
    'match'
    >>> inspect_model("models/cnn/stacking.json")["models"]
    ['fold_0.keras', 'fold_1.keras', 'fold_2.keras']
    """
    path = Path(path)
    if not path.exists():
        raise DataFileNotFoundError(f"model path {str(path)!r} does not exist")
    if path.is_file() and path.name == MANIFEST:
        return _inspect_manifest(path)
    directory, files = path.parent, [path]
    if path.is_dir() and not is_model(path):
        if not (path / MANIFEST).is_file():
            raise BaseModelError(
                f"{str(path)!r} is neither a model nor a fold-model directory (no "
                f"{MANIFEST}); give a model file, a SavedModel folder or a fold directory"
            )
        directory, files = path, fold_model_files(path)
        if not files:
            raise BaseModelError(f"fold directory {str(path)!r} holds no fold_k model")
    target = files[0]
    loader = get_loader(target)
    model = loader.load(target, custom_objects=custom_objects)
    manifest = read_manifest(directory) if (directory / MANIFEST).is_file() else None
    status = check_model_files(manifest, files) if manifest else None
    return {
        "path": str(path),
        "model": str(target),
        "format": loader.format,
        **model.describe(),
        "manifest": manifest,
        "files": status,
        "hashes": _hash_summary(status, manifest),
    }


def _inspect_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` and its directory's model files checked against it."""
    directory = path.parent
    manifest = read_manifest(directory)
    files = fold_model_files(directory)
    status = check_model_files(manifest, files)
    return {
        "path": str(path),
        "models": [p.name for p in files],
        "manifest": manifest,
        "files": status,
        "hashes": _hash_summary(status, manifest),
    }
