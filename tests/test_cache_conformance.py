"""The cache store contract (stacking/cache/_base.py), checked for EVERY registered store.

:class:`CacheStoreContract` is the reusable suite: ``TestCacheStoreContract`` runs it over
every registered kind, each with its sample in ``SAMPLES``; a module that registers its own
store runs it too (tests/test_plugin_cache.py). A registered kind without a sample fails
``test_cache_every_registered_store_has_a_sample``, so no store slips in untested.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from stacking.cache import CacheStore, LocalCacheStore, MemoryCacheStore, get_cache, make_key
from stacking.config import CacheConfig


def _key(**changes: Any) -> str:
    parts = {"model": "m" * 64, "output": None, "inputs": ["a" * 64]}
    return make_key(**{**parts, **changes})


def flip_low_byte(good: bytes) -> bytes:
    """Silent corruption: one low-order byte of the last float64 changed (a valid .npy)."""
    data = bytearray(good)
    data[-48 - 8] ^= 0x01  # inside the array data, before the 48-byte checksum trailer
    return bytes(data)


@dataclass(frozen=True)
class StoreSample:
    """How to configure a kind in a test folder, and how its medium gets damaged."""

    section: Callable[[Path], dict[str, Any]]  # the `cache:` section, given a tmp folder
    corrupt: Callable[[Any, str], None]  # flip one byte of the stored entry of a key


def _corrupt_file(store: LocalCacheStore, key: str) -> None:
    path = store._path(key)
    path.write_bytes(flip_low_byte(path.read_bytes()))


def _corrupt_bytes(store: MemoryCacheStore, key: str) -> None:
    store.entries[key] = flip_low_byte(store.entries[key])


SAMPLES: dict[str, StoreSample] = {
    "local": StoreSample(lambda tmp: {"kind": "local", "dir": str(tmp / "c")}, _corrupt_file),
    "memory": StoreSample(lambda tmp: {"kind": "memory"}, _corrupt_bytes),
}


def kinds_without_sample(samples: dict[str, StoreSample]) -> set[str]:
    return set(CacheConfig.registered()) - set(samples)


class CacheStoreContract:
    """The contract every store keeps; a subclass is parametrized with ``kind`` and sets
    ``samples`` (kind -> :class:`StoreSample`)."""

    samples: dict[str, StoreSample] = SAMPLES

    @pytest.fixture
    def store(self, kind: str, tmp_path: Path) -> CacheStore:
        store = get_cache(CacheConfig.build(self.samples[kind].section(tmp_path)))
        assert store.kind == kind  # built by the factory from the kind's own section
        return store

    def test_round_trip_is_a_copy(self, store: CacheStore) -> None:
        array = np.arange(12, dtype=np.float32).reshape(3, 4)
        assert store.get(_key()) is None
        store.put(_key(), array)
        array[0, 0] = 99  # the caller's array changing later does not change the entry
        got = store.get(_key())
        assert got is not None
        assert got.dtype == np.float32 and got.shape == (3, 4) and got[0, 0] == 0
        got[1, 1] = -1  # nor does changing what get returned
        again = store.get(_key())
        assert again is not None and again[1, 1] == 5

    def test_last_put_wins_and_info_counts(self, store: CacheStore) -> None:
        store.put(_key(), np.ones(3))
        store.put(_key(), np.zeros(3))
        store.put(_key(fold=1), np.zeros(2))
        assert_array_equal(store.get(_key()), np.zeros(3))
        info = store.info()
        assert info["enabled"] is True and info["entries"] == 2 and info["bytes"] > 40
        assert store.verify() == []
        assert store.clear() == 2
        assert store.get(_key()) is None and store.info()["entries"] == 0

    def test_failed_put_keeps_the_previous_entry(self, store: CacheStore) -> None:
        store.put(_key(), np.arange(3))
        with pytest.raises(ValueError, match="Object arrays cannot be saved"):
            store.put(_key(), np.array([object()], dtype=object))
        assert_array_equal(store.get(_key()), np.arange(3))
        assert store.info()["entries"] == 1

    def test_corrupt_entry_is_reported_then_dropped(
        self, store: CacheStore, kind: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        store.put(_key(), np.linspace(0, 1, 10))
        store.put(_key(fold=1), np.ones(4))
        self.samples[kind].corrupt(store, _key())
        ((_, problem),) = store.verify()
        assert "checksum mismatch" in problem
        with caplog.at_level(logging.WARNING, logger="stacking.cache"):
            assert store.get(_key()) is None
        assert len(caplog.records) == 1
        assert store.verify() == [] and store.info()["entries"] == 1
        assert_array_equal(store.get(_key(fold=1)), np.ones(4))

    def test_threads_never_read_a_partial_entry(self, store: CacheStore) -> None:
        """Readers racing writers of one key get a whole entry every time: the key exists
        before they start, so a read that misses (a torn entry dropped) fails too."""
        arrays = [np.full(50_000, float(i)) for i in range(4)]
        seen: list[float] = []
        errors: list[str] = []
        store.put(_key(), arrays[0])

        def write(i: int) -> None:
            for _ in range(10):
                store.put(_key(), arrays[i])

        def read() -> None:
            for _ in range(40):
                got = store.get(_key())
                if got is not None:
                    seen.append(got[0])
                    if not (got == got[0]).all():
                        errors.append("mixed entry")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        threads += [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(seen) == 2 * 40 and set(seen) <= {0.0, 1.0, 2.0, 3.0}
        last = store.get(_key())
        assert last is not None and last[0] in {0.0, 1.0, 2.0, 3.0} and store.verify() == []


@pytest.mark.parametrize("kind", sorted(CacheConfig.registered()))
class TestCacheStoreContract(CacheStoreContract):
    pass


def test_cache_every_registered_store_has_a_sample() -> None:
    assert CacheConfig.registered(), "no cache store is registered"
    missing = kinds_without_sample(SAMPLES)
    assert not missing, f"add a sample to SAMPLES for {sorted(missing)}"


def test_cache_a_store_registered_without_a_sample_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typing import Literal

    from stacking.cache import register_cache

    monkeypatch.setattr(CacheConfig, "kinds", dict(CacheConfig.registered()))

    class UnsampledConfig(CacheConfig):
        kind: Literal["unsampled"] = "unsampled"

    @register_cache(UnsampledConfig)
    class UnsampledStore(MemoryCacheStore):
        pass

    assert kinds_without_sample(SAMPLES) == {"unsampled"}
