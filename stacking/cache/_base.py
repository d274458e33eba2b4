"""The cache store contract, the entry format every store shares, and the key helpers.

A key is the sha256 of everything a prediction depends on (the model file's content, the
input array's content, the output picked), so a changed model or changed data can never
be served a stale entry, and a key does not depend on file names or paths.

An entry is the array in ``.npy`` format followed by a trailer: ``MAGIC`` and the sha256
of the ``.npy`` bytes. :func:`decode_entry` checks it, so a flipped bit or a truncated file
is never read as numbers: the store drops the entry and the engine recomputes it.

A store is one module holding its config class (a :class:`~stacking.config.CacheConfig`
subclass with ``kind: Literal["name"]`` and its keys) and its :class:`CacheStore`
subclass, registered together with ``@register_cache(ItsConfig)``; :func:`get_cache`
builds the one a ``cache:`` section names. ``tests/test_cache_conformance.py`` checks the
contract below for every registered kind.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from typing import IO, Any, ClassVar, TypeVar

import numpy as np

from stacking.base import path_digest as path_digest  # hashing lives in base
from stacking.config import CacheConfig
from stacking.errors import CacheError, ConfigError

log = logging.getLogger("stacking.cache")
# 2: entries carry a checksum trailer. Bumping it changes every key, so entries of an older
# layout are never read (``stacking cache verify`` lists them; ``cache clear`` drops them).
CACHE_VERSION = 2
MAGIC = b"STKCACHE-SHA256:"
_TRAILER = len(MAGIC) + 32
_CHUNK = 1 << 24


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and values (not of its memory layout)."""
    h = hashlib.sha256()
    h.update(f"{array.dtype}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def make_key(**parts: Any) -> str:
    """The cache key of a prediction: sha256 over ``parts`` and :data:`CACHE_VERSION`.

    >>> make_key(model=path_digest(p), inputs=[array_digest(x)], output=None)
    """
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class _HashingWriter:
    """A write-only file object that hashes what it forwards (``np.save`` writes to it)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fh.write(data)


def write_entry(fh: IO[bytes], array: np.ndarray) -> None:
    """Write one entry to the binary file ``fh``: ``.npy`` data, then ``MAGIC`` + sha256.

    Streams: no copy of the array is made beyond numpy's own write buffer.
    """
    writer = _HashingWriter(fh)
    np.save(writer, np.asarray(array), allow_pickle=False)
    fh.write(MAGIC + writer.sha.digest())


def check_entry(fh: IO[bytes]) -> None:
    """Verify the entry in the seekable binary file ``fh``; :class:`CacheError` if it is
    truncated or altered. Leaves ``fh`` at its start."""
    size = fh.seek(0, os.SEEK_END)
    if size < _TRAILER:
        raise CacheError(f"no checksum trailer ({size} bytes): truncated or not an entry")
    fh.seek(size - _TRAILER)
    trailer = fh.read(_TRAILER)
    if trailer[: len(MAGIC)] != MAGIC:
        raise CacheError(f"no checksum trailer ({size} bytes): truncated or not an entry")
    fh.seek(0)
    sha, remaining = hashlib.sha256(), size - _TRAILER
    while remaining:
        chunk = fh.read(min(remaining, _CHUNK))
        if not chunk:
            raise CacheError("the entry shrank while it was read")
        sha.update(chunk)
        remaining -= len(chunk)
    if sha.digest() != trailer[len(MAGIC) :]:
        raise CacheError("checksum mismatch: the entry's bytes changed after it was written")
    fh.seek(0)


def read_entry(fh: IO[bytes]) -> np.ndarray:
    """The array of the entry in ``fh`` after :func:`check_entry`."""
    check_entry(fh)
    try:
        return np.lib.format.read_array(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # a checksummed but unreadable array
        raise CacheError(f"unreadable array: {exc}") from exc


def encode_entry(array: np.ndarray) -> bytes:
    """One entry as bytes (for stores that keep bytes, e.g. in memory)."""
    buffer = io.BytesIO()
    write_entry(buffer, array)
    return buffer.getvalue()


def decode_entry(blob: bytes) -> np.ndarray:
    """The array of an entry's bytes; :class:`CacheError` if truncated or altered."""
    array = read_entry(io.BytesIO(blob))
    return array if array.flags.writeable else array.copy()


def warn_dropped(entry: str, problem: str) -> None:
    """The ONE log line a dropped entry gives (logging, not ``warnings``: a cache miss
    is recovered, not a problem of the caller's code)."""
    log.warning("cache entry %s dropped (%s); it will be recomputed", entry, problem)


class CacheStore(abc.ABC):
    """Maps a key (64 hex characters) to one array. The contract of every store:

    * ``get`` returns an equal copy of what ``put`` stored, or ``None`` (a miss). An entry
      that fails its checksum is a miss: ``get`` logs one warning line
      (:func:`warn_dropped`), removes the entry and returns ``None``; it never raises for
      a damaged entry.
    * ``put`` is atomic: a reader sees the old entry, the new one or none, never part of
      one; a failed ``put`` leaves the previous entry.
    * Thread- and process-safe: concurrent ``get``/``put`` on the same key from threads (and,
      for stores shared on disk, processes) are allowed; the last ``put`` wins.
    * ``verify`` reads every entry and returns ``(entry, problem)`` for each bad one,
      without removing anything; ``clear`` removes all and returns how many there were.
    * A store owns no resources that need closing.

    :func:`register_cache` sets ``kind``; a store builds itself from its ``cache:``
    section in :meth:`from_config`.
    """

    kind: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: Any) -> CacheStore:
        """This store configured by its ``cache:`` section (``cfg.kind == kind``)."""
        return cls()

    @abc.abstractmethod
    def get(self, key: str) -> np.ndarray | None: ...

    @abc.abstractmethod
    def put(self, key: str, array: np.ndarray) -> None: ...

    @abc.abstractmethod
    def info(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def clear(self) -> int: ...

    @abc.abstractmethod
    def verify(self) -> list[tuple[str, str]]: ...


class NullCacheStore(CacheStore):
    """No caching (``cache.enabled: false``): every ``get`` is a miss."""

    def get(self, key: str) -> np.ndarray | None:
        return None

    def put(self, key: str, array: np.ndarray) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"enabled": False, "entries": 0, "bytes": 0}

    def clear(self) -> int:
        return 0

    def verify(self) -> list[tuple[str, str]]:
        return []


S = TypeVar("S", bound=type[CacheStore])


def register_cache(config: type[CacheConfig]) -> Callable[[S], S]:
    """Class decorator: make the class the store of ``cache: {kind: ...}``, the kind and
    keys of ``config`` (its module's :class:`~stacking.config.CacheConfig`)::

        class DictCacheConfig(CacheConfig):
            kind: Literal["dict"] = "dict"

        @register_cache(DictCacheConfig)
        class DictCacheStore(CacheStore): ...
    """

    def register(cls: S) -> S:
        CacheConfig.register(config, cls)
        cls.kind = config.kind_name()
        return cls

    return register


def get_cache(cfg: CacheConfig) -> CacheStore:
    """The store a ``cache:`` section asks for (``enabled: false``: none)."""
    if not cfg.enabled:
        return NullCacheStore()
    implementation = type(cfg).implementation
    if not (isinstance(implementation, type) and issubclass(implementation, CacheStore)):
        raise ConfigError(
            f"cache.kind {cfg.kind!r} is not a cache store; "
            f"use one of {sorted(CacheConfig.registered())}"
        )
    return implementation.from_config(cfg)
