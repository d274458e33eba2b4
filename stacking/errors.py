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
    └── OutputError(StackingError, OSError)            results folder or local store not writable

The CLI turns a ``StackingError`` into one line ``error: …`` and exit code 2. Anything
else is a bug in tf-stacking: exit code 1 with a traceback.

A message names the user's own thing (file, key, model), shows what was received and
says how to fix it.
"""

from __future__ import annotations

from collections.abc import Iterable


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
    """The results folder or a local MLflow store cannot be written: read-only, full disk,
    file-size limit."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when the message is empty: a
    library's multi-line message quoted inside one of ours, which must stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'views'?"`` when one of ``choices`` is close to ``name`` (difflib's
    ratio), else ``""``: appended to a message that already lists or names the choices, so
    a misspelt key, view, column or experiment points at the one the user meant."""
    import difflib

    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), options, n=1, cutoff=0.6)
    if not close:  # a case slip (`Target` for `target`) scores low on ratio
        close = [c for c in options if c.lower() == str(name).lower()][:1]
    return f"; did you mean {close[0]!r}?" if close else ""
