"""``LocalCacheStore``: one file per entry under a folder, on any POSIX path.

A shared filesystem that every Ray worker sees works too. Entries are written to a
temporary file and renamed into place (atomic on POSIX), so a run killed mid-write leaves
no half-written entry; each (model, fold) is its own entry, so a run killed after fold 3
resumes at fold 4.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from stacking.cache._base import (
    CacheStore,
    check_entry,
    read_entry,
    register_cache,
    warn_dropped,
    write_entry,
)
from stacking.config import CacheConfig
from stacking.errors import CacheError


class LocalCacheConfig(CacheConfig):
    """A folder of entry files (the default); a shared filesystem path serves Ray workers."""

    kind: Literal["local"] = "local"
    dir: Path = Field(Path(".stacking_cache"), description="relative to the working folder")


@register_cache(LocalCacheConfig)
class LocalCacheStore(CacheStore):
    """``DIR/ab/abcdef….npy`` files (``.npy`` data plus a checksum trailer).

    >>> store = LocalCacheStore(".stacking_cache")
    >>> store.put(key, oof); store.get(key)
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @classmethod
    def from_config(cls, cfg: LocalCacheConfig) -> LocalCacheStore:
        return cls(cfg.dir)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 (closed below; the inode is needed after)
        except FileNotFoundError:
            return None
        with fh:
            inode = os.fstat(fh.fileno()).st_ino
            try:
                return read_entry(fh)
            except CacheError as exc:
                problem = str(exc)
        warn_dropped(str(path), problem)
        try:  # unless another process has meanwhile replaced it with a good entry
            if path.stat().st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass
        return None

    def put(self, key: str, array: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as fh:
                write_entry(fh, array)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _entries(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        # ".tmp-*" files are writes in progress (or left by a killed process): not entries.
        return sorted(p for p in self.directory.glob("*/*.npy") if not p.name.startswith("."))

    def info(self) -> dict[str, Any]:
        entries = self._entries()
        return {
            "enabled": True,
            "dir": str(self.directory),
            "entries": len(entries),
            "bytes": sum(p.stat().st_size for p in entries),
        }

    def clear(self) -> int:
        n = len(self._entries())
        if self.directory.is_dir():
            shutil.rmtree(self.directory)
        return n

    def verify(self) -> list[tuple[str, str]]:
        bad = []
        for path in self._entries():
            try:
                with open(path, "rb") as fh:
                    check_entry(fh)
            except FileNotFoundError:  # removed by a concurrent run: not bad
                continue
            except CacheError as exc:
                bad.append((str(path), str(exc)))
        return bad
