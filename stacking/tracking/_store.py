"""Talking to an MLflow store safely: bounded HTTP retries, one creator at a time, one line.

MLflow retries an unreachable server with backoff for minutes (7 urllib3 WARNING lines,
253 s for ``http://127.0.0.1:9``) and two processes creating a fresh ``mlflow.db`` race
on its tables. :func:`session` bounds the retries through MLflow's own environment
variables, only for the duration of our calls, and :func:`store_lock` serialises the
first use of a SQLite store with a lock file beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Checks must answer in seconds; logging at the end may wait a little for a busy server.
CHECK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
LOG_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
HOST = socket.gethostname()


@contextlib.contextmanager
def session(uri: str | None, http: dict[str, str], *, force: bool = False) -> Iterator[None]:
    """Point fluent MLflow at ``uri`` and bound its HTTP retries; restore both afterwards.

    ``force`` overrides values the user set in the environment (checks must be quick);
    otherwise the user's own settings win.
    """
    import mlflow

    # MLflow logs a store failure with its whole SQLAlchemy traceback before raising it;
    # the caller turns the exception into one line instead.
    db_log = logging.getLogger("mlflow.store.db.utils")
    saved_level = db_log.level
    db_log.setLevel(logging.CRITICAL)
    saved_env: dict[str, str | None] = {k: os.environ.get(k) for k in http}
    for key, value in http.items():
        if force or key not in os.environ:
            os.environ[key] = value
    previous = mlflow.get_tracking_uri() if uri else None
    if uri:
        mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        db_log.setLevel(saved_level)
        if previous is not None:
            mlflow.set_tracking_uri(previous)
        for key, saved in saved_env.items():
            if saved is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = saved


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI, else ``None``."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path.removeprefix("file:")) if path and path != ":memory:" else None


def lock_path(db: Path) -> Path:
    """The lock file of the SQLite store ``db``: in the temporary folder, named by the
    store's absolute path, so that nothing is left beside a store the user keeps in a
    repository (a lock file cannot be deleted safely while another process may wait on it).
    """
    key = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"stacking-mlflow-{key}.lock"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold :func:`lock_path` of a SQLite store (no-op for other stores).

    MLflow creates the tables of a fresh database on first use; two processes doing that
    at once fail with ``table … already exists``. The lock makes the second one wait and
    then find the tables.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the race stays possible there
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path(path), "a")  # noqa: SIM115 - closed below
    except OSError:  # a read-only folder, another user's lock: MLflow says what fails
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_system_refusal(db: Path) -> str | None:
    """Why the file system refuses writes to the SQLite store ``db`` (read-only, full,
    a file-size limit), or ``None`` when it accepts them.

    SQLite reports such refusals as ``disk I/O error`` or ``readonly database``; a probe
    write of our own gets the operating system's reason.
    """
    try:
        if db.exists():
            with open(db, "r+b"):
                pass
        db.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=db.parent, prefix=".stacking-probe-") as probe:
            probe.write(b"\0" * (1 << 20))  # more than a fresh store's first pages
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return exc.strerror or str(exc).splitlines()[0]
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def one_line(exc: BaseException) -> str:
    """The message a user can act on, from MLflow's, SQLAlchemy's or urllib3's exceptions."""
    chain, seen = [], set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        chain.append(str(node))
        node = node.__cause__ or node.__context__
    text = " ".join(chain)
    for needle, message in [
        ("readonly database", "attempt to write a readonly database"),
        ("unable to open database file", "unable to open database file"),
        ("Connection refused", "connection refused"),
        ("Read timed out", "the server did not answer in time"),
        ("timed out", "the server did not answer in time"),
        ("Name or service not known", "unknown host"),
        ("Failed to resolve", "unknown host"),
        ("No space left on device", "no space left on device"),
        ("File too large", "file too large"),
    ]:
        if needle in text:
            return message
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= 300 else first[:297] + "..."
