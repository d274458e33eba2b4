"""A content-addressed, atomic, checksummed store of base-model predictions.

Inference with large frozen models is the expensive step of a stack; it is done once and
cached. Stores are a plug-in family in Optuna's style: ``_base.py`` states the contract
(:class:`CacheStore`), each store is one module holding its config class and its class,
registered together with :func:`register_cache`, and :func:`get_cache` builds the one a
``cache:`` section names::

    >>> store = get_cache(CacheConfig.build({"dir": ".stacking_cache"}))  # LocalCacheStore
    >>> store.put(make_key(model=..., inputs=[...]), oof); store.get(key)
"""

from __future__ import annotations

from pathlib import Path

from stacking.cache._base import (
    CACHE_VERSION,
    CacheStore,
    NullCacheStore,
    array_digest,
    decode_entry,
    encode_entry,
    get_cache,
    make_key,
    path_digest,
    register_cache,
    warn_dropped,
)
from stacking.cache._local import LocalCacheConfig, LocalCacheStore
from stacking.cache._memory import MemoryCacheConfig, MemoryCacheStore
from stacking.config import CacheConfig
from stacking.errors import CacheError, ConfigError

__all__ = [
    "CACHE_VERSION",
    "CacheStore",
    "LocalCacheConfig",
    "LocalCacheStore",
    "MemoryCacheConfig",
    "MemoryCacheStore",
    "NullCacheStore",
    "array_digest",
    "decode_entry",
    "encode_entry",
    "get_cache",
    "make_key",
    "path_digest",
    "register_cache",
    "verify_cache",
    "warn_dropped",
]


def verify_cache(directory: str | Path) -> int:
    """Check every entry of the cache folder ``directory``; return how many there are.

    Raises :class:`CacheError` naming the bad entries (one line); nothing is removed, a
    run recomputes them (``stacking cache verify``).
    """
    if not Path(directory).is_dir():
        raise ConfigError(f"cache verify: {str(directory)!r} is not a folder; pass --dir CACHE_DIR")
    store = get_cache(CacheConfig.build({"kind": "local", "dir": directory}))
    n, bad = store.info()["entries"], store.verify()
    if bad:
        names = ", ".join(f"{Path(p).name} ({why})" for p, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CacheError(
            f"cache {str(directory)!r}: {len(bad)} of {n} entries are corrupt: {names}{more}; "
            "run `stacking cache clear`, or just rerun (a run recomputes bad entries)"
        )
    return n
