"""Exceptions raised by tf-stacking.

Every error a user can fix derives from :class:`StackingError`, and also from the
built-in exception that fits, so ``except ValueError`` keeps working::

    StackingError
    ├── ConfigError(StackingError, ValueError)         bad YAML, unknown key, wrong type
    ├── DataError(StackingError, ValueError)           missing column, bad target, shapes
    ├── DataFileNotFoundError(DataError, FileNotFoundError)
    ├── BaseModelError(StackingError, ValueError)      unreadable model, wrong input shape
    │   └── LeakageError(BaseModelError)               a model that may have seen the row
    ├── CacheError(StackingError, RuntimeError)        corrupt cache entries (cache verify)
    ├── TrackingError(StackingError, RuntimeError)     the MLflow store refused or is away
    └── OutputError(StackingError, OSError)            results folder not writable

The CLI turns a ``StackingError`` into one line ``error: …`` and exit code 2. Anything
else is a bug in tf-stacking: exit code 1 with a traceback.

A message names the user's own thing (file, key, model), shows what was received and
says how to fix it.
"""

from __future__ import annotations


class StackingError(Exception):
    """Root of every error a user can fix by changing config, data or models."""


class ConfigError(StackingError, ValueError):
    """The configuration is invalid: unknown key, wrong type, impossible value."""


class DataError(StackingError, ValueError):
    """The data does not fit the configuration: missing column, bad target, shapes."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A data or model path named in the configuration does not exist."""


class BaseModelError(StackingError, ValueError):
    """A base model cannot be loaded or does not fit its input view."""


class LeakageError(BaseModelError):
    """Using this model would give a row a prediction from a model trained on it."""


class CacheError(StackingError, RuntimeError):
    """A cache entry failed its checksum. A run drops and recomputes such an entry (one
    warning line); ``stacking cache verify`` reports them with this error."""


class TrackingError(StackingError, RuntimeError):
    """The tracking store cannot record the run (unreachable server, bad URI)."""


class OutputError(StackingError, OSError):
    """The results folder cannot be written: read-only, full disk, file-size limit."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when the message is empty: a
    library's multi-line message quoted inside one of ours, which must stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
