"""``MemoryCacheStore``: entries in this process only (tests, notebooks)."""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np

from stacking.cache._base import (
    CacheStore,
    decode_entry,
    encode_entry,
    register_cache,
    warn_dropped,
)
from stacking.config import CacheConfig
from stacking.errors import CacheError


class MemoryCacheConfig(CacheConfig):
    """Entries in this process's memory: not shared with other processes, gone at exit."""

    kind: Literal["memory"] = "memory"


@register_cache(MemoryCacheConfig)
class MemoryCacheStore(CacheStore):
    """Entries as checksummed bytes in a dict, so a stored array is a copy the caller
    cannot alter. Not shared between processes (Ray workers recompute).

    >>> store = MemoryCacheStore()
    """

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            blob = self.entries.get(key)
        if blob is None:
            return None
        try:
            return decode_entry(blob)
        except CacheError as exc:
            warn_dropped(f"memory:{key[:12]}", str(exc))
            with self._lock:
                if self.entries.get(key) is blob:
                    del self.entries[key]
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        blob = encode_entry(array)
        with self._lock:
            self.entries[key] = blob

    def info(self) -> dict[str, Any]:
        with self._lock:
            sizes = [len(b) for b in self.entries.values()]
        return {"enabled": True, "dir": None, "entries": len(sizes), "bytes": sum(sizes)}

    def clear(self) -> int:
        with self._lock:
            n = len(self.entries)
            self.entries.clear()
        return n

    def verify(self) -> list[tuple[str, str]]:
        with self._lock:
            items = list(self.entries.items())
        bad = []
        for key, blob in items:
            try:
                decode_entry(blob)
            except CacheError as exc:
                bad.append((f"memory:{key[:12]}", str(exc)))
        return bad
