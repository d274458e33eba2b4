"""A content-addressed, atomic, resumable store of base-model predictions.

Inference with large frozen models is the expensive step of a stack; it is done once.
A key is the sha256 of everything the prediction depends on (the model file's content,
the input array's content, the output picked), so a changed model or changed data can
never be served a stale entry, and the key does not depend on file names or paths.
Entries are written to a temporary file and renamed into place, so a run killed
mid-write leaves no half-written entry; each (model, fold) is its own entry, so a run
killed after fold 3 resumes at fold 4.

Stores are a plug-in point: a :class:`CacheStore` needs ``get``, ``put``, ``info`` and
``clear``. ``LocalCacheStore`` works on any POSIX path, including a shared filesystem
that every worker sees.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from stacking.base import path_digest as path_digest  # hashing lives in base (re-export)

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def array_digest(array: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{array.dtype}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def make_key(**parts: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CacheStore(abc.ABC):
    """Maps a key to one array. Implementations must make ``put`` atomic."""

    @abc.abstractmethod
    def get(self, key: str) -> np.ndarray | None: ...

    @abc.abstractmethod
    def put(self, key: str, array: np.ndarray) -> None: ...

    @abc.abstractmethod
    def info(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def clear(self) -> int: ...


class NullCacheStore(CacheStore):
    """No caching (``cache.enabled: false``)."""

    def get(self, key):
        return None

    def put(self, key, array):
        return None

    def info(self):
        return {"enabled": False, "entries": 0, "bytes": 0}

    def clear(self):
        return 0


class LocalCacheStore(CacheStore):
    """``DIR/ab/abcdef….npy`` files; see the module docstring."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key):
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            log.warning("dropping unreadable cache entry %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None

    def put(self, key, array):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(array), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _entries(self):
        if not self.directory.is_dir():
            return []
        # ".tmp-*" files are writes in progress (or left by a killed process): not entries.
        return [p for p in self.directory.glob("*/*.npy") if not p.name.startswith(".")]

    def info(self):
        entries = self._entries()
        return {
            "enabled": True,
            "dir": str(self.directory),
            "entries": len(entries),
            "bytes": sum(p.stat().st_size for p in entries),
        }

    def clear(self):
        n = len(self._entries())
        if self.directory.is_dir():
            shutil.rmtree(self.directory)
        return n


def open_cache(cfg) -> CacheStore:
    """The store a :class:`~stacking.config.CacheConfig` asks for."""
    return LocalCacheStore(cfg.dir) if cfg.enabled else NullCacheStore()
