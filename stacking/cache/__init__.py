"""A content-addressed, atomic, checksummed store of base-model predictions.

Inference with large frozen models is the expensive step of a stack; it is done once and
cached. Stores are a plug-in family in Optuna's style: ``_base.py`` states the contract
(:class:`CacheStore`), one module per store, and :func:`get_cache` picks one from the
config's ``cache:`` section through a registry (``cache.kind``)::

    >>> store = get_cache(CacheConfig(dir=".stacking_cache"))   # a LocalCacheStore
    >>> store.put(make_key(model=..., inputs=[...]), oof); store.get(key)

A new store is one module with a :class:`CacheStore` subclass plus
``register_cache("kind", factory)``; the conformance test in ``tests/test_cache.py``
runs over every registered kind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stacking.cache._base import (
    CACHE_VERSION,
    CacheStore,
    array_digest,
    decode_entry,
    encode_entry,
    make_key,
    path_digest,
)
from stacking.cache._local import LocalCacheStore
from stacking.cache._memory import MemoryCacheStore, NullCacheStore
from stacking.config import CacheConfig
from stacking.errors import CacheError, ConfigError

__all__ = [
    "CACHE_VERSION",
    "STORES",
    "CacheStore",
    "LocalCacheStore",
    "MemoryCacheStore",
    "NullCacheStore",
    "array_digest",
    "decode_entry",
    "encode_entry",
    "get_cache",
    "make_key",
    "open_cache",
    "path_digest",
    "register_cache",
    "verify_cache",
]

# kind -> factory taking the CacheConfig
STORES: dict[str, Callable[..., CacheStore]] = {
    "local": lambda cfg: LocalCacheStore(cfg.dir),
    "memory": lambda cfg: MemoryCacheStore(),
}


def register_cache(kind: str, factory: Callable[..., CacheStore]) -> None:
    """Make ``cache: {kind: KIND}`` build a store with ``factory(cache_config)``."""
    STORES[kind] = factory


def get_cache(cfg: CacheConfig) -> CacheStore:
    """The store a :class:`~stacking.config.CacheConfig` asks for (``enabled: false``: none)."""
    if not cfg.enabled:
        return NullCacheStore()
    kind = getattr(cfg, "kind", "local")
    if kind not in STORES:
        raise ConfigError(f"cache.kind {kind!r} is not a cache store; use one of {sorted(STORES)}")
    return STORES[kind](cfg)


open_cache = get_cache  # the name experiment.py and older code use


def verify_cache(directory: str | Path) -> int:
    """Check every entry of the cache folder ``directory``; return how many there are.

    Raises :class:`CacheError` naming the bad entries (one line); nothing is removed, a
    run recomputes them (``stacking cache verify``).
    """
    if not Path(directory).is_dir():
        raise ConfigError(f"cache verify: {str(directory)!r} is not a folder; pass --dir CACHE_DIR")
    store = LocalCacheStore(directory)
    n, bad = store.info()["entries"], store.verify()
    if bad:
        names = ", ".join(f"{Path(p).name} ({why})" for p, why in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CacheError(
            f"cache {str(directory)!r}: {len(bad)} of {n} entries are corrupt: {names}{more}; "
            "run `stacking cache clear`, or just rerun (a run recomputes bad entries)"
        )
    return n
