"""Content digests of model files: the manifest's per-file hashes and the cache's keys.

Hashing a large model takes seconds, so a digest is computed once per (path, size,
modification time) in a process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_file_digests: dict[tuple, str] = {}


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of every file of a folder (names and bytes).

    >>> path_digest(Path("models/cnn/fold_0.keras"))
    '3f5c…'
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp in _file_digests:
        return _file_digests[stamp]
    h = hashlib.sha256()
    for p in files:
        if path.is_dir():  # a file's own name is not content; a folder's layout is
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    _file_digests[stamp] = h.hexdigest()
    return _file_digests[stamp]
