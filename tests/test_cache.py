"""Cache: content-addressed keys, atomic checksummed entries, corrupt entries as misses
(one warning line, then recomputed), info, verify and clear; the store a ``cache:`` section
builds. The contract every store keeps is in ``tests/test_cache_conformance.py``."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from pydantic import ValidationError

from stacking.cache import (
    LocalCacheStore,
    MemoryCacheStore,
    NullCacheStore,
    array_digest,
    get_cache,
    make_key,
    path_digest,
)
from stacking.config import CacheConfig


def _key(**changes):
    parts = {"model": "m" * 64, "output": None, "inputs": ["a" * 64]}
    return make_key(**{**parts, **changes})


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([[0.1, 0.9], [0.7, 0.3]]),
        np.arange(5, dtype=np.int64),
        np.zeros((0, 3)),
    ],
)
def test_local_cache_put_get_round_trip(tmp_path, array):
    store = LocalCacheStore(tmp_path / "cache")
    key = _key()
    assert store.get(key) is None
    store.put(key, array)
    got = store.get(key)
    assert got.dtype == array.dtype and got.shape == array.shape
    assert_array_equal(got, array)


def test_local_cache_survives_a_new_store_object(tmp_path):
    LocalCacheStore(tmp_path).put(_key(), np.ones(3))
    assert_array_equal(LocalCacheStore(tmp_path).get(_key()), np.ones(3))


def test_local_cache_put_overwrites(tmp_path):
    store = LocalCacheStore(tmp_path)
    store.put(_key(), np.ones(3))
    store.put(_key(), np.zeros(3))
    assert_array_equal(store.get(_key()), np.zeros(3))
    assert store.info()["entries"] == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "n" * 64},
        {"output": 1},
        {"output": "logits"},
        {"inputs": ["b" * 64]},
        {"inputs": ["a" * 64, "a" * 64]},
        {"fold": 0},
    ],
)
def test_make_key_changes_with_any_part(changes):
    assert _key(**changes) != _key()


def test_make_key_is_deterministic_and_order_free():
    assert make_key(a=1, b=[2, 3]) == make_key(b=[2, 3], a=1)
    assert len(make_key(a=1)) == 64


@pytest.mark.parametrize(
    "other",
    [
        np.arange(6, dtype=np.float64).reshape(3, 2),  # same bytes, other shape
        np.arange(6, dtype=np.float32).reshape(2, 3),  # other dtype
        np.arange(1, 7, dtype=np.float64).reshape(2, 3),  # other values
    ],
)
def test_array_digest_changes_with_shape_dtype_or_values(other):
    base = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert array_digest(base) == array_digest(base.copy())
    assert array_digest(other) != array_digest(base)


def test_array_digest_ignores_memory_layout():
    a = np.arange(12.0).reshape(3, 4)
    assert array_digest(np.asfortranarray(a)) == array_digest(a)


def _rewrite(path, data: bytes):
    """Write new bytes; move mtime on, as any later rewrite of a model file does."""
    old = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(old + 1_000_000_000, old + 1_000_000_000))


def test_path_digest_changes_when_file_bytes_change(tmp_path):
    model = tmp_path / "fold_0.keras"
    model.write_bytes(b"weights-v1")
    before = path_digest(model)
    assert path_digest(model) == before
    _rewrite(model, b"weights-v2")  # same name, same size, other bytes
    assert path_digest(model) != before


def test_path_digest_of_folder_changes_when_any_file_changes(tmp_path):
    folder = tmp_path / "fold_0"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.data").write_bytes(b"w1")
    before = path_digest(folder)
    _rewrite(folder / "variables" / "variables.data", b"w2")
    assert path_digest(folder) != before


def test_path_digest_of_folder_independent_of_its_location(tmp_path):
    folder = tmp_path / "a" / "fold_0"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    copy = tmp_path / "b" / "model"
    shutil.copytree(folder, copy)
    assert path_digest(copy) == path_digest(folder)


def test_path_digest_of_file_independent_of_its_name(tmp_path):
    (tmp_path / "fold_0.keras").write_bytes(b"weights")
    (tmp_path / "copy.keras").write_bytes(b"weights")
    assert path_digest(tmp_path / "copy.keras") == path_digest(tmp_path / "fold_0.keras")


def test_failed_put_leaves_no_file_behind(tmp_path):
    store = LocalCacheStore(tmp_path)
    unsavable = np.array([object(), object()], dtype=object)
    with pytest.raises(ValueError, match="Object arrays cannot be saved"):
        store.put(_key(), unsavable)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert store.get(_key()) is None


def test_failed_put_keeps_the_previous_entry(tmp_path):
    store = LocalCacheStore(tmp_path)
    store.put(_key(), np.arange(3))
    with pytest.raises(ValueError):
        store.put(_key(), np.array([object()], dtype=object))
    assert_array_equal(store.get(_key()), np.arange(3))
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def _entry_file(root):
    (entry,) = [p for p in root.rglob("*.npy")]
    return entry


def _flip_low_byte(good: bytes) -> bytes:
    """The issue's silent corruption: one low-order byte of the last float64 changed."""
    data = bytearray(good)
    data[-48 - 8] ^= 0x01  # inside the array data, before the 48-byte checksum trailer
    return bytes(data)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda good: b"",  # empty file
        lambda good: b"this is not an npy file",
        lambda good: good[: len(good) - 8],  # truncated trailer
        lambda good: good[: len(good) - 60],  # truncated data
        lambda good: good[:20],  # truncated header
        _flip_low_byte,  # still a valid .npy: only the checksum can tell
    ],
    ids=["empty", "garbage", "cut-trailer", "cut-data", "cut-header", "flipped-byte"],
)
def test_corrupt_entry_is_a_miss_removed_with_one_warning(tmp_path, corrupt, caplog):
    store = LocalCacheStore(tmp_path)
    store.put(_key(), np.linspace(0.1, 0.9, 10))
    entry = _entry_file(tmp_path)
    entry.write_bytes(corrupt(entry.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="stacking.cache"):
        assert store.get(_key()) is None
    assert not entry.exists()
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert f"cache entry {entry} dropped" in record.getMessage()
    store.put(_key(), np.linspace(0.1, 0.9, 10))  # and the next run refills it
    assert_array_equal(store.get(_key()), np.linspace(0.1, 0.9, 10))


def test_flipped_byte_would_be_read_as_wrong_numbers_without_the_checksum(tmp_path):
    """Why the checksum exists: the altered .npy part still loads, with a changed value."""
    store = LocalCacheStore(tmp_path)
    good = np.linspace(0.1, 0.9, 10)
    store.put(_key(), good)
    entry = _entry_file(tmp_path)
    entry.write_bytes(_flip_low_byte(entry.read_bytes()))
    silently = np.load(entry, allow_pickle=False)  # numpy ignores the trailer
    assert silently.shape == good.shape and not np.array_equal(silently, good)
    ((name, problem),) = store.verify()
    assert name == str(entry) and "checksum mismatch" in problem
    assert entry.exists()  # verify reports, it does not remove


def test_get_keeps_an_entry_replaced_by_another_process(tmp_path, monkeypatch):
    """A reader dropping a bad entry must not delete a good one written meanwhile."""
    store = LocalCacheStore(tmp_path)
    store.put(_key(), np.arange(4.0))
    entry = _entry_file(tmp_path)
    entry.write_bytes(b"broken")
    real_read = __import__("stacking.cache._local", fromlist=["x"]).read_entry

    def read_then_race(fh):
        LocalCacheStore(tmp_path).put(_key(), np.arange(4.0))  # the other writer
        return real_read(fh)

    monkeypatch.setattr("stacking.cache._local.read_entry", read_then_race)
    assert store.get(_key()) is None
    monkeypatch.undo()
    assert_array_equal(store.get(_key()), np.arange(4.0))


def test_info_and_clear_count_entries(tmp_path):
    store = LocalCacheStore(tmp_path / "cache")
    assert store.info() == {
        "enabled": True,
        "dir": str(tmp_path / "cache"),
        "entries": 0,
        "bytes": 0,
    }
    arrays = [np.zeros(10), np.ones((4, 4)), np.arange(3)]
    for i, a in enumerate(arrays):
        store.put(_key(fold=i), a)
    info = store.info()
    assert info["entries"] == 3
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert info["bytes"] == sum(p.stat().st_size for p in files) > sum(a.nbytes for a in arrays)
    assert store.clear() == 3
    assert store.info()["entries"] == 0
    assert all(store.get(_key(fold=i)) is None for i in range(3))
    assert store.clear() == 0


def test_null_cache_store_never_stores(tmp_path):
    store = NullCacheStore()
    store.put(_key(), np.ones(3))
    assert store.get(_key()) is None
    assert store.info() == {"enabled": False, "entries": 0, "bytes": 0}
    assert store.clear() == 0


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        ({"dir": "c"}, LocalCacheStore),
        ({"kind": "memory"}, MemoryCacheStore),
        ({"enabled": False, "dir": "c"}, NullCacheStore),
        ({"enabled": False, "kind": "memory"}, NullCacheStore),
    ],
)
def test_get_cache_follows_config(section, cls):
    store = get_cache(CacheConfig.build(section))
    assert type(store) is cls
    store.put(_key(), np.ones(2))
    assert (store.get(_key()) is not None) is (cls is not NullCacheStore)


def test_cache_config_keys_follow_the_kind(tmp_path):
    """``dir`` is the local store's key: the memory store refuses it, naming it."""
    assert CacheConfig.build({"dir": tmp_path}).dir == tmp_path
    with pytest.raises(ValidationError, match=r"dir\n  Extra inputs are not permitted"):
        CacheConfig.build({"kind": "memory", "dir": tmp_path})


def test_cache_config_unknown_kind_names_the_key():
    with pytest.raises(
        ValidationError, match=r"cache.kind 'redis' is not a cache store; use one of "
    ):
        CacheConfig.build({"kind": "redis"})
