"""``stacking init``: a commented starting config guessed from the training table.

A newcomer has a ``train.csv`` (and often a ``test.csv``) and no config. The guesses are
the ones a person makes looking at the table, each written with the reason beside it, so
that a wrong guess is one edit:

* the id: a column named like an id (``id``, ``PassengerId``, ``user_id``) whose values
  are unique; else none (row numbers);
* the target: the one column of the training table that the test table lacks; else a
  column named like a target (``target``, ``label``, ``y`` …); else the last column;
* the task: from the target's values (:func:`stacking.data.infer_task`);
* a view ``numeric``: the numeric columns other than the id and the target that have no
  missing values (a frozen model cannot predict a missing value) and that the test table
  also has.

Base models cannot be guessed: the file has a commented example, and ``stacking run``
accepts the file once one is added.

>>> text = starter_config(Path("train.csv"), test=Path("test.csv"), at=Path("."))
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import yaml

from stacking.data import infer_task, read_table
from stacking.errors import ConfigError, DataError

_TARGET_NAMES = ("target", "label", "labels", "y", "class", "outcome", "survived", "saleprice")


def _guess_id(train: pd.DataFrame, test: pd.DataFrame | None) -> str | None:
    def id_like(name: str) -> bool:
        lowered = name.lower()
        return lowered == "id" or lowered.endswith(("_id", "id"))

    names = sorted(
        (str(c) for c in train.columns if id_like(str(c))), key=lambda c: c.lower() != "id"
    )
    for name in names:
        values = train[name]
        in_test = test is None or name in test.columns
        if values.notna().all() and values.is_unique and in_test:
            return name
    return None


def _guess_target(
    train: pd.DataFrame, test: pd.DataFrame | None, id_column: str | None
) -> tuple[str | list[str], str]:
    """The target column(s) and why they were chosen."""
    if test is not None:
        only_train = [str(c) for c in train.columns if c not in test.columns and c != id_column]
        if len(only_train) == 1:
            return only_train[0], "the only column the test table lacks"
        binary = [c for c in only_train if set(train[c].dropna().unique()) <= {0, 1}]
        if len(only_train) > 1 and binary == only_train:
            return only_train, "the 0/1 columns the test table lacks"
    for name in train.columns:
        if str(name).lower() in _TARGET_NAMES and name != id_column:
            return str(name), "named like a target"
    last = str(train.columns[-1])
    if last == id_column:
        raise DataError("the table has only an id column; a target column is needed")
    return last, "the last column (no column is named like a target: check it)"


def _numeric_view(
    train: pd.DataFrame, test: pd.DataFrame | None, exclude: set[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """The view's columns, and the columns left out by reason."""
    chosen: list[str] = []
    left_out: dict[str, list[str]] = {"not numeric": [], "missing values": [], "not in test": []}
    for column in map(str, train.columns):
        if column in exclude:
            continue
        values = train[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            left_out["not numeric"].append(column)
        elif values.isna().any() or (test is not None and test[column].isna().any()):
            left_out["missing values"].append(column)
        elif test is not None and column not in test.columns:
            left_out["not in test"].append(column)
        else:
            chosen.append(column)
    return chosen, {reason: cols for reason, cols in left_out.items() if cols}


def _path_from(config_dir: Path, path: Path) -> str:
    """``path`` as the config will read it: relative to the config's folder."""
    return Path(os.path.relpath(path.resolve(), config_dir.resolve())).as_posix()


def _listed(columns: list[str], limit: int = 8) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def starter_config(train_path: Path, *, test: Path | None = None, at: Path) -> str:
    """The text of a starting config for ``train_path`` (and ``test``), with its paths
    relative to the folder ``at`` the config is written in."""
    train = read_table(train_path)
    test_frame = read_table(test) if test is not None else None
    if len(train.columns) < 2:
        raise DataError(
            f"{train_path} has {len(train.columns)} column(s); a training table needs input "
            "columns and a target column"
        )
    id_column = _guess_id(train, test_frame)
    target, why_target = _guess_target(train, test_frame, id_column)
    targets = target if isinstance(target, list) else [target]
    task = infer_task(train[targets] if isinstance(target, list) else train[target])
    columns, left_out = _numeric_view(train, test_frame, {*targets, *filter(None, [id_column])})
    if not columns:
        raise DataError(
            f"{train_path}: no numeric column without missing values besides the id and the "
            f"target {target!r}; a view needs numeric columns (encode or impute them first)"
        )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", train_path.stem).strip("-._") or "experiment"
    data: dict = {"train": _path_from(at, train_path)}
    if test is not None:
        data["test"] = _path_from(at, test)
    if id_column is not None:
        data["id"] = id_column
    data.update(target=target, task=task, views={"numeric": {"columns": columns}})

    def block(mapping: dict) -> list[str]:
        return yaml.safe_dump(mapping, sort_keys=False, width=96).rstrip().splitlines()

    n_values = train[targets[0]].nunique()
    lines = [
        "# A starting config written by `stacking init` from the training table.",
        "# Check the guesses below, add your base models, then: stacking run THIS_FILE",
        *block({"name": f"{name}-stack"}),
        "",
        "# id: "
        + (
            f"{id_column!r} (unique in every row)"
            if id_column
            else "none found; rows are numbered (set `id:` if the table has one)"
        ),
        f"# target: {target!r} ({why_target})",
        f"# task: {task} (from the target's {n_values} distinct values; if that is wrong, set",
        "#   binary, multiclass, multilabel or regression)",
        f"# view `numeric`: {len(columns)} numeric columns, in the order the models read them",
    ]
    for reason, cols in left_out.items():
        lines.append(f"#   left out ({reason}): {_listed(cols)}")
    lines += [*block({"data": data}), ""]
    lines += [
        "# Every base model's out-of-fold predictions must come from this fold plan: train",
        "# them with stacking.train_fold_models, or anywhere on the plan that",
        "# `stacking folds THIS_FILE --output folds.csv` writes (works before any model).",
        *block({"folds": {"n_splits": 5, "seed": 0}}),
        "",
        "# Add one entry per base model (at least one), for example:",
        "base_models:",
        "#  my_model:",
        "#    path: models/my_model        # a folder of fold models with its stacking.json",
        "#    input: numeric               # the view above",
        "#  pretrained:",
        "#    path: models/pretrained.keras",
        "#    input: numeric",
        "#    trained_on: external         # a model that never saw these rows",
        "",
        "# The meta-model: `default` is logistic regression (ridge for regression).",
        *block({"meta": {"candidates": ["default"]}}),
    ]
    return "\n".join(lines) + "\n"


def write_starter_config(
    train: str | Path, *, test: str | Path | None = None, output: str | Path = "config.yaml"
) -> Path:
    """Write :func:`starter_config` to ``output``; an existing file is never replaced."""
    out = Path(output)
    if out.exists():
        raise ConfigError(
            f"{str(out)!r} already exists; choose another --output or remove the file"
        )
    text = starter_config(Path(train), test=Path(test) if test is not None else None, at=out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
