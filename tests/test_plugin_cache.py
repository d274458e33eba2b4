"""A new cache store, added by this module alone: its config class and its class,
registered with ``@register_cache``, then named by a config (``cache: {kind: dict}``) that
an experiment runs end to end, with no change anywhere else. It also keeps the cache
store contract (the reusable :class:`CacheStoreContract`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from conftest import UNTRACKED, assert_same_results
from pydantic import Field
from test_cache_conformance import CacheStoreContract, StoreSample, flip_low_byte

from stacking import Experiment
from stacking.cache import CacheStore, decode_entry, encode_entry, register_cache, warn_dropped
from stacking.config import CacheConfig
from stacking.errors import CacheError

SHELVES: dict[str, dict[str, bytes]] = {}  # shelf name -> key -> checksummed entry


class DictCacheConfig(CacheConfig):
    """Entries on a named shelf of this process: stores with one shelf share entries."""

    kind: Literal["dict"] = "dict"
    shelf: str = Field("default", description="stores naming one shelf share its entries")


class DictCacheStore(CacheStore):
    puts: ClassVar[dict[str, int]] = {}  # shelf -> entries written, over all its stores

    def __init__(self, shelf: str) -> None:
        self.shelf = shelf
        self.entries = SHELVES.setdefault(shelf, {})
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: DictCacheConfig) -> DictCacheStore:
        return cls(cfg.shelf)

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            blob = self.entries.get(key)
        if blob is None:
            return None
        try:
            return decode_entry(blob)
        except CacheError as exc:
            warn_dropped(f"{self.shelf}:{key[:12]}", str(exc))
            with self._lock:
                if self.entries.get(key) is blob:
                    del self.entries[key]
            return None

    def put(self, key: str, array: np.ndarray) -> None:
        blob = encode_entry(array)
        with self._lock:
            self.entries[key] = blob
            self.puts[self.shelf] = self.puts.get(self.shelf, 0) + 1

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
                bad.append((f"{self.shelf}:{key[:12]}", str(exc)))
        return bad


@pytest.fixture(scope="module", autouse=True)
def dict_kind() -> Iterator[None]:
    """Register the kind for this module's tests only (the registry is process-wide)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CacheConfig, "kinds", dict(CacheConfig.registered()))
        register_cache(DictCacheConfig)(DictCacheStore)
        yield
    SHELVES.clear()


def _corrupt(store: DictCacheStore, key: str) -> None:
    store.entries[key] = flip_low_byte(store.entries[key])


@pytest.mark.parametrize("kind", ["dict"])
class TestDictCacheStoreContract(CacheStoreContract):
    # A shelf per test folder: each test starts with an empty store.
    samples = {"dict": StoreSample(lambda tmp: {"kind": "dict", "shelf": str(tmp)}, _corrupt)}


def test_plugin_cache_store_serves_an_experiment_named_in_the_config(
    multiclass_project, untracked_run, tmp_path
):
    cfg = multiclass_project.config(tmp_path, **UNTRACKED, cache={"kind": "dict", "shelf": "e2e"})
    first = Experiment.from_yaml(cfg, output_dir=tmp_path / "first", progress=False)
    assert type(first.cache) is DictCacheStore
    first.run()
    written = DictCacheStore.puts["e2e"]
    assert written > 0 and len(SHELVES["e2e"]) == written  # every prediction, once
    assert_same_results(tmp_path / "first", untracked_run)
    # A second run finds every prediction on the shelf: nothing is computed or written.
    again = Experiment.from_yaml(cfg, output_dir=tmp_path / "again", progress=False)
    again.run()
    assert DictCacheStore.puts["e2e"] == written
    assert_same_results(tmp_path / "again", untracked_run)
