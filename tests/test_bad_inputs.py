"""The bad-input table of docs/bad-input.md, row by row: what a user who gets something wrong sees.

Every row is one mistake on an otherwise good project (the control test runs that
project). Through the CLI (``stacking.cli.main`` in-process) it must give exit code 2,
exactly one stderr line starting ``error:``, no traceback, and write nothing (no results
folder, no ``.partial``, no cache entry: every file under the test's folder is unchanged).
Through the Python API the same mistake raises the named ``StackingError`` subclass.

The project is tiny (30 rows, untrained 4→3 Keras models saved once per session), and
most rows fail before any model loads. ``python tests/test_bad_inputs.py`` prints the
table in Markdown with the messages the CLI really prints (how docs/bad-input.md's was made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stacking.errors import (
    BaseModelError,
    CacheError,
    ConfigError,
    DataError,
    DataFileNotFoundError,
    LeakageError,
    StackingError,
)

N_ROWS, CLASSES = 30, ["ant", "bee", "cat"]


def _tables(root: Path) -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"id": [f"r{i:02d}" for i in range(N_ROWS)]})
    for j in range(4):
        train[f"f_{j}"] = rng.normal(size=N_ROWS).round(3)
    train["y"] = [CLASSES[(i // 3) % 3] for i in range(N_ROWS)]
    train["w"] = rng.uniform(0.5, 2.0, N_ROWS).round(3)
    train["fold"] = [i % 3 for i in range(N_ROWS)]
    train["txt"] = "some text"
    train["gap"] = [np.nan if i == 4 else 1.0 for i in range(N_ROWS)]
    train.to_csv(root / "train.csv", index=False)
    test = train.drop(columns=["y", "fold"]).head(9).copy()
    test["id"] = [f"t{i}" for i in range(9)]
    test.to_csv(root / "test.csv", index=False)


def _models(root: Path) -> None:
    import keras

    from stacking.folds import FoldPlan

    def model():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))

    folds = root / "models" / "folds"
    folds.mkdir(parents=True)
    for k in range(3):
        model().save(folds / f"fold_{k}.keras")
    model().save(root / "models" / "outside.keras")
    train = pd.read_csv(root / "train.csv")
    plan = FoldPlan(ids=train["id"].to_numpy(), folds=train["fold"].to_numpy())
    manifest = {
        "format_version": 1,
        "n_splits": 3,
        "folds_digest": plan.digest,
        "format": "keras",
        "task": "multiclass",
        "classes": CLASSES,
    }
    (folds / "stacking.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="session")
def bad_root(tmp_path_factory) -> Path:
    """Data and saved models shared by every row (never written to by a row)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    _tables(root)
    _models(root)
    return root


def _good_config(root: Path) -> dict:
    return {
        "name": "bad-inputs",
        "data": {
            "train": str(root / "train.csv"),
            "test": str(root / "test.csv"),
            "id": "id",
            "target": "y",
            "views": {"x": {"columns": "f_*"}},
        },
        "folds": {"column": "fold"},
        "base_models": {
            "folds": {"path": str(root / "models" / "folds"), "input": "x"},
            "outside": {
                "path": str(root / "models" / "outside.keras"),
                "input": "x",
                "trained_on": "external",
            },
        },
        "meta": {"candidates": ["logistic"], "bootstrap": 0},
        "tracking": {"enabled": False},
        "cache": {"dir": "cache"},
    }


# -- edits: each makes one mistake (on the config dict, or files under the test folder) --


def _set(dotted: str, value):
    def edit(raw, tmp, root):
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    return edit


def _drop(dotted: str):
    def edit(raw, tmp, root):
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node[p]
        del node[last]

    return edit


def _train(change: Callable[[pd.DataFrame], pd.DataFrame], name: str = "train.csv"):
    """Use a changed copy of the training table."""

    def edit(raw, tmp, root):
        frame = change(pd.read_csv(root / "train.csv"))
        path = tmp / name
        if path.suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            path.write_text(frame.to_csv(index=False))
        raw["data"]["train"] = str(path)

    return edit


def _test_table(change: Callable[[pd.DataFrame], pd.DataFrame]):
    def edit(raw, tmp, root):
        change(pd.read_csv(root / "test.csv")).to_csv(tmp / "test.csv", index=False)
        raw["data"]["test"] = str(tmp / "test.csv")

    return edit


def _fold_dir(*, drop: tuple[str, ...] = (), manifest: str | None = None):
    """A copy of the fold-model folder without some files, or with another manifest."""

    def edit(raw, tmp, root):
        copy_ = tmp / "folds"
        shutil.copytree(root / "models" / "folds", copy_)
        for name in drop:
            (copy_ / name).unlink()
        if manifest is not None:
            (copy_ / "stacking.json").write_text(manifest)
        raw["base_models"]["folds"]["path"] = str(copy_)

    return edit


def _only_outside(path_in_tmp: str, content: bytes):
    """The one base model is an external model file with these bytes."""

    def edit(raw, tmp, root):
        (tmp / path_in_tmp).write_bytes(content)
        raw["base_models"] = {
            "outside": {"path": str(tmp / path_in_tmp), "input": "x", "trained_on": "external"}
        }

    return edit


def _config_text(text: bytes):
    def edit(raw, tmp, root):
        return text

    return edit


def _corrupt_cache(raw, tmp, root):
    from stacking.cache import LocalCacheStore, make_key

    store = LocalCacheStore(tmp / "cache")
    for fold in range(3):
        store.put(make_key(fold=fold), np.linspace(0, 1, 12))
    entry = store._path(make_key(fold=1))
    data = bytearray(entry.read_bytes())
    data[-60] ^= 0x01
    entry.write_bytes(bytes(data))


@dataclass
class Row:
    """One table row: ``what`` the user did, the ``error`` class, the line's pattern."""

    area: str
    what: str
    error: type[StackingError]
    match: str
    edit: Callable | None = None
    sets: tuple[str, ...] = ()
    argv: Callable[[Path, Path], list[str]] | None = None  # other commands than `run`
    api: Callable[[Path, Path], object] | None = None  # their Python API call


def _inspect(rel: str) -> dict:
    def api(tmp, cfg):
        from stacking.base import load_base_model

        return load_base_model(tmp / rel)

    return {"argv": lambda tmp, cfg: ["inspect", str(tmp / rel)], "api": api}


def _verify_api(tmp, cfg):
    from stacking.cache import verify_cache

    return verify_cache(tmp / "cache")


def _predictor_api(tmp, cfg):
    from stacking.predictor import load_predictor

    return load_predictor(tmp / "empty")


def _empty_folder(raw, tmp, root):
    (tmp / "empty").mkdir()


ROWS = {
    # -- config ---------------------------------------------------------------------------
    "config-missing": Row(
        "config",
        "config file that does not exist",
        DataFileNotFoundError,
        r"config file '.*nope\.yaml' does not exist",
        argv=lambda tmp, cfg: ["run", str(tmp / "nope.yaml")],
        api=lambda tmp, cfg: _from_yaml(tmp / "nope.yaml"),
    ),
    "config-bad-yaml": Row(
        "config",
        "config that is not valid YAML",
        ConfigError,
        r"c\.yaml:2:1: not valid YAML: expected ',' or '\]', but got '<stream end>' \(while "
        r"parsing a flow sequence at line 1: 'data: \[1, 2'\)",
        _config_text(b"data: [1, 2\n"),
    ),
    "config-bad-yaml-indent": Row(
        "config",
        "a key indented one space too far",
        ConfigError,
        r"c\.yaml:3:10: not valid YAML: mapping values are not allowed here "
        r"\(line 3: 'target: y'\)",
        _config_text(b"data:\n  id: id\n   target: y\n"),
    ),
    "config-not-utf8": Row(
        "config",
        "config saved as Latin-1 (not UTF-8)",
        ConfigError,
        r"c\.yaml: not UTF-8 text \(byte 0xe9 at offset \d+\); save the config as UTF-8",
        _config_text("name: caf\u00e9\n".encode("latin-1")),
    ),
    "config-scalar": Row(
        "config",
        "config file holding `42`",
        ConfigError,
        r"c\.yaml: expected a mapping at the top level. Received: 42",
        _config_text(b"42\n"),
    ),
    "config-unknown-key": Row(
        "config",
        "misspelt key `data.tragt`",
        ConfigError,
        r"unknown key 'data\.tragt'. Remove it or check its spelling; did you mean 'target'\?$",
        _set("data.tragt", "y"),
    ),
    "config-unknown-nested-key": Row(
        "config",
        "misspelt key `columns` inside a view",
        ConfigError,
        r"unknown key 'data\.views\.x\.colums'\. .*; did you mean 'columns'\?$",
        _set("data.views.x", {"colums": "f_*"}),
    ),
    "config-wrong-type": Row(
        "config",
        "`--set folds.n_splits=two`",
        ConfigError,
        r"invalid value for 'folds\.n_splits'.* Received: 'two'",
        sets=("folds.n_splits=two",),
    ),
    "config-missing-key": Row(
        "config",
        "no `data.target`",
        ConfigError,
        r"missing required key 'data\.target'",
        _drop("data.target"),
    ),
    "config-set-unclosed": Row(
        "config",
        "`--set meta.candidates=[unclosed`",
        ConfigError,
        r"--set meta\.candidates: the value is not valid YAML .* Received: '\[unclosed'",
        sets=("meta.candidates=[unclosed",),
    ),
    "config-set-syntax": Row(
        "config",
        "`--set folds` (no `=value`)",
        ConfigError,
        r"--set expects dotted\.key=value\. Received: 'folds'",
        sets=("folds",),
    ),
    "config-name-traversal": Row(
        "config",
        "`name: ../../x` (would write outside runs/)",
        ConfigError,
        r"invalid value for 'name': .*becomes a folder name",
        _set("name", "../../x"),
    ),
    "config-bad-model-name": Row(
        "config",
        "base model named `a__b`",
        ConfigError,
        r"base model name 'a__b' must start with a letter.*neither contain '__' nor end in '_'",
        _set("base_models.a__b", {"path": "m.keras", "input": "x", "trained_on": "external"}),
    ),
    "config-unknown-view": Row(
        "config",
        "`input:` names a view not in data.views",
        ConfigError,
        r"base_models\.folds\.input: no view 'nope' in data\.views \(defined: \['x'\]\)",
        sets=("base_models.folds.input=nope",),
    ),
    "config-misspelt-view": Row(
        "config",
        "`input:` names a misspelt view",
        ConfigError,
        r"no view 'xs' in data\.views \(defined: \['x'\]\); did you mean 'x'\?$",
        sets=("base_models.folds.input=xs",),
    ),
    "config-cache-kind": Row(
        "cache",
        "`cache.kind: redis` (no such store)",
        ConfigError,
        r"cache\.kind 'redis' is not a cache store; use one of \['local', 'memory'\]",
        sets=("cache.kind=redis",),
    ),
    # -- data -----------------------------------------------------------------------------
    "data-missing-file": Row(
        "data",
        "`data.train` file does not exist",
        DataFileNotFoundError,
        r"data file '.*gone\.csv' does not exist",
        _set("data.train", "/nonexistent/gone.csv"),
    ),
    "data-wrong-suffix": Row(
        "data",
        "training data as `.xlsx`",
        DataError,
        r"data file '.*train\.xlsx' has suffix '\.xlsx'; use \.csv or \.parquet",
        _train(lambda f: f, "train.xlsx"),
    ),
    "data-missing-target": Row(
        "data",
        "`data.target` names no column",
        DataError,
        r"train\.csv has no column\(s\) \['label'\]",
        _set("data.target", "label"),
    ),
    "data-target-nan": Row(
        "data",
        "target with an empty cell",
        DataError,
        r"target 'y' in .*train\.csv has missing values; drop those rows",
        _train(lambda f: f.assign(y=f["y"].where(f.index != 3))),
    ),
    "data-null-id": Row(
        "data",
        "an empty id cell",
        DataError,
        r"data\.id column 'id' in .*train\.csv is empty in 1 row\(s\), e\.g\. row 5",
        _train(lambda f: f.assign(id=f["id"].where(f.index != 5))),
    ),
    "data-duplicate-ids": Row(
        "data",
        "duplicate ids",
        DataError,
        r"id column 'id' in .*train\.csv has duplicates, e\.g\. 'r00'",
        _train(lambda f: f.assign(id=["r00", "r00", *f["id"][2:]])),
    ),
    "data-test-no-id": Row(
        "data",
        "test table without the id column",
        DataError,
        r"test\.csv has no column\(s\) \['id'\] named by data\.id",
        _test_table(lambda f: f.drop(columns=["id"])),
    ),
    "data-single-class": Row(
        "data",
        "target with a single class",
        DataError,
        r"task binary needs 2 classes in 'y'; .*train\.csv has 1: \['ant'\]",
        _train(lambda f: f.assign(y="ant")),
    ),
    "data-binary-continuous": Row(
        "data",
        "continuous target declared `binary`",
        DataError,
        r"task binary needs 2 classes in 'y'; .*train\.csv has 30: .*Set data\.task to "
        r"regression \(the values look like a regression target\)",
        lambda raw, tmp, root: (
            _train(lambda f: f.assign(y=f["f_0"] * 1.5))(raw, tmp, root),
            raw["data"].update(task="binary"),
        ),
    ),
    "data-multiclass-continuous": Row(
        "data",
        "continuous target declared `multiclass`",
        DataError,
        r"task multiclass needs class labels in 'y'; .*train\.csv has 30 distinct fractional "
        r"values .*Set data\.task to regression",
        lambda raw, tmp, root: (
            _train(lambda f: f.assign(y=f["f_0"] * 1.5))(raw, tmp, root),
            raw["data"].update(task="multiclass"),
        ),
    ),
    "data-misspelt-target": Row(
        "data",
        "`data.target` in the wrong case",
        DataError,
        r"train\.csv has no column\(s\) \['Y'\]; columns are .*; did you mean 'y'\?$",
        sets=("data.target=Y",),
    ),
    "data-bad-weight": Row(
        "data",
        "negative sample weight",
        DataError,
        r"weight column 'w' in .*train\.csv must be finite and >= 0",
        lambda raw, tmp, root: (
            _train(lambda f: f.assign(w=-f["w"]))(raw, tmp, root),
            raw["data"].update(weight="w"),
        ),
    ),
    "data-view-missing-columns": Row(
        "data",
        "view columns that do not exist",
        DataError,
        r"train\.csv has no column\(s\) \['f_9'\]",
        _set("data.views.x", {"columns": ["f_0", "f_1", "f_2", "f_9"]}),
    ),
    "data-view-shape": Row(
        "data",
        "view `shape` that does not fit its columns",
        DataError,
        r"view \['f_0', 'f_1', 'f_2', 'f_3'\] in .*train\.csv has 4 columns but shape \[5\] "
        r"needs 5",
        _set("data.views.x", {"columns": "f_*", "shape": [5]}),
    ),
    "data-view-text": Row(
        "data",
        "non-numeric column in a view",
        DataError,
        r"view \['f_0', 'f_1', 'f_2', 'txt'\] in .*train\.csv has values that are not float32",
        _set("data.views.x", {"columns": ["f_0", "f_1", "f_2", "txt"]}),
    ),
    "data-view-nan": Row(
        "data",
        "NaN in a view column",
        DataError,
        r"view .* in .*train\.csv has missing or infinite values in \['gap'\]",
        _set("data.views.x", {"columns": ["f_0", "f_1", "f_2", "gap"]}),
    ),
    # -- folds ----------------------------------------------------------------------------
    "folds-range": Row(
        "folds",
        "fold column numbered 0, 1, 3",
        DataError,
        r"folds\.column 'fold' in .*train\.csv: a fold plan needs folds numbered 0\.\.K-1 "
        r"with K >= 2\. Received folds \[0, 1, 3\]",
        _train(lambda f: f.assign(fold=f["fold"].replace(2, 3))),
    ),
    "folds-no-column": Row(
        "folds",
        "`folds.column` names no column",
        DataError,
        r"folds\.column 'split' is not a column of .*train\.csv",
        sets=("folds.column=split",),
    ),
    "folds-too-many": Row(
        "folds",
        "`n_splits` larger than the rows",
        DataError,
        r"folds\.n_splits=50 exceeds the 30 rows",
        _set("folds", {"n_splits": 50}),
    ),
    "folds-holdout-zero": Row(
        "folds",
        "`folds.holdout: 0`",
        ConfigError,
        r"invalid value for 'folds'.*above 0 and below 0\.5\. Received: holdout=0\.0; try 0\.1",
        _set("folds", {"n_splits": 3, "holdout": 0}),
    ),
    "folds-holdout-half": Row(
        "folds",
        "`folds.holdout: 0.5` (half the rows)",
        ConfigError,
        r"invalid value for 'folds'.*below 0\.5\. Received: holdout=0\.5; try 0\.1",
        _set("folds", {"n_splits": 3, "holdout": 0.5}),
    ),
    "folds-holdout-few-rows": Row(
        "folds",
        "`folds.holdout: 0.05` of 12 rows of a class",
        DataError,
        r"folds\.holdout: 0\.05 reserves 0 of the 12 rows of class 'ant' in .*train\.csv "
        r"\(each class needs >= 1 reserved .*\); raise folds\.holdout",
        _set("folds", {"n_splits": 3, "holdout": 0.05}),
    ),
    "folds-guard-no-holdout": Row(
        "folds",
        "`meta.guard: true` without `folds.holdout`",
        ConfigError,
        r"meta\.guard scores the stack on rows no fold model trained on, but the fold plan "
        r"reserves none; set folds\.holdout",
        _set("meta.guard", True),
        sets=("folds.column=null", "folds.n_splits=3"),
    ),
    "folds-no-manifest": Row(
        "folds",
        "fold-model folder without `stacking.json`",
        LeakageError,
        r"base model 'folds': .* has no stacking\.json, so its fold plan cannot be checked",
        _fold_dir(drop=("stacking.json",)),
    ),
    "folds-wrong-digest": Row(
        "folds",
        "fold models trained on another fold plan",
        LeakageError,
        r"base model 'folds' was trained on fold plan \w+ \(K=3\) but this experiment's plan",
        _set("folds", {"kind": "kfold", "n_splits": 3, "seed": 1}),
    ),
    "folds-wrong-task": Row(
        "folds",
        "regression fold models (another fold plan) in a multiclass experiment",
        BaseModelError,
        r"base model 'folds' was trained for a regression task but the data is multiclass; "
        r"set data\.task: regression",
        _fold_dir(
            manifest=json.dumps(
                {"n_splits": 3, "folds_digest": "0" * 16, "format": "keras", "task": "regression"}
            )
        ),
    ),
    "folds-missing-file": Row(
        "folds",
        "fold-model folder missing `fold_2.keras`",
        BaseModelError,
        r"base model 'folds': .* has no fold_2 model .* though its manifest says K=3",
        _fold_dir(drop=("fold_2.keras",)),
    ),
    "folds-manifest-42": Row(
        "folds",
        "`stacking.json` holding `42`",
        BaseModelError,
        r"manifest '.*stacking\.json' holds int 42, not a JSON object",
        _fold_dir(manifest="42"),
    ),
    # -- base models ----------------------------------------------------------------------
    "base-missing-path": Row(
        "base models",
        "base model path does not exist",
        DataFileNotFoundError,
        r"base model 'folds': path '.*nowhere' does not exist",
        _set("base_models.folds.path", "/nowhere"),
    ),
    "base-undeclared-single": Row(
        "base models",
        "single model without `trained_on`",
        LeakageError,
        r"base model 'outside' is a single model .* with no declaration of what it was trained",
        _drop("base_models.outside.trained_on"),
    ),
    "base-external-directory": Row(
        "base models",
        "`trained_on: external` on a directory",
        BaseModelError,
        r"base model 'outside': `trained_on: external` takes one model, but .* is a directory",
        lambda raw, tmp, root: raw["base_models"]["outside"].update(
            path=raw["base_models"]["folds"]["path"]
        ),
    ),
    "base-not-a-model": Row(
        "base models",
        "external model file of an unknown format (`.txt`)",
        BaseModelError,
        r"'.*model\.txt' is not a model format tf-stacking reads; use one of: \.keras or \.h5",
        _only_outside("model.txt", b"weights"),
    ),
    "base-corrupt-file": Row(
        "base models",
        "corrupt `.keras` file",
        BaseModelError,
        r"cannot load Keras model '.*broken\.keras': the file is not a \.keras archive",
        _only_outside("broken.keras", b"not a zip archive"),
    ),
    "base-input-shape": Row(
        "base models",
        "view of 3 columns for a model of 4 inputs",
        BaseModelError,
        r"base model 'folds' \(fold_0\.keras\) expects input shape\(s\) \[\(4,\)\] "
        r"\['input_layer(_\d+)?'\] but its input view gives \[\(3,\)\]",
        _set("data.views.x", {"columns": ["f_0", "f_1", "f_2"]}),
    ),
    # -- meta -----------------------------------------------------------------------------
    "meta-unknown-metric": Row(
        "meta",
        "unknown metric",
        ConfigError,
        r"unknown metric 'acuracy'\. Use a scikit-learn scorer name",
        sets=("metrics=[acuracy]",),
    ),
    "meta-metric-wrong-task": Row(
        "meta",
        "`rmse` for a classification task",
        ConfigError,
        r"metrics: 'rmse' does not apply to a multiclass task",
        sets=("metrics=[rmse]",),
    ),
    "meta-unknown-candidate": Row(
        "meta",
        "unknown candidate short name",
        ConfigError,
        r"meta\.candidates: 'nosuch' is neither a short name .* nor an import path",
        sets=("meta.candidates=[nosuch]",),
    ),
    "meta-misspelt-candidate": Row(
        "meta",
        "misspelt candidate short name",
        ConfigError,
        r"meta\.candidates: 'logistc' is neither a short name .*; did you mean 'logistic'\?$",
        sets=("meta.candidates=[logistc]",),
    ),
    "meta-candidate-not-importable": Row(
        "meta",
        "candidate import path that does not import",
        ConfigError,
        r"meta\.candidates: cannot import 'nosuch_pkg\.Model'",
        sets=("meta.candidates=[nosuch_pkg.Model]",),
    ),
    "meta-candidate-function": Row(
        "meta",
        "candidate `subprocess.check_call` with `args: [touch, FILE]`",
        ConfigError,
        r"meta\.candidates: 'subprocess\.check_call' is not a scikit-learn estimator class "
        r"\(it is function\)",
        _set(
            "meta.candidates",
            [{"estimator": "subprocess.check_call", "params": {"args": ["touch", "pwned"]}}],
        ),
    ),
    "meta-candidate-not-estimator": Row(
        "meta",
        "candidate class that is not an estimator",
        ConfigError,
        r"'collections\.OrderedDict' is not a scikit-learn estimator class \(it is a class "
        r"without fit/get_params\)",
        sets=("meta.candidates=[collections.OrderedDict]",),
    ),
    "meta-candidate-bad-params": Row(
        "meta",
        "candidate with an unknown parameter",
        ConfigError,
        r"meta\.candidates: candidate 'logistic': .*unexpected keyword argument 'nosuch'",
        sets=("meta.candidates=[{estimator: logistic, params: {nosuch: 1}}]",),
    ),
    "meta-candidate-wrong-task": Row(
        "meta",
        "regressor-only short name for a classification task",
        ConfigError,
        r"meta\.candidates: 'ridge' does not apply to a multiclass task",
        sets=("meta.candidates=[ridge]",),
    ),
    "meta-duplicate-names": Row(
        "meta",
        "two candidates with the same name",
        ConfigError,
        r"meta\.candidates: the name 'logistic' is used twice",
        sets=("meta.candidates=[logistic, logistic]",),
    ),
    "meta-candidate-unsafe-name": Row(
        "meta",
        "candidate `name: ../x`",
        ConfigError,
        r"invalid value for 'meta\.candidates\.0\.name': .*candidate name must start",
        sets=("meta.candidates=[{name: ../x, estimator: logistic}]",),
    ),
    # -- other commands -------------------------------------------------------------------
    "cli-predict-suffix": Row(
        "CLI",
        "`stacking predict ... --output p.txt` (CLI only)",
        ConfigError,
        r"--output '.*p\.txt' must end in \.csv or \.parquet",
        argv=lambda tmp, cfg: ["predict", str(tmp), str(cfg), "--output", str(tmp / "p.txt")],
    ),
    "cli-predict-no-predictor": Row(
        "CLI",
        "`stacking predict` on a folder without a predictor",
        DataFileNotFoundError,
        r"'.*empty' holds no \w+\.json; pass a results directory",
        _empty_folder,
        argv=lambda tmp, cfg: [
            "predict",
            str(tmp / "empty"),
            str(cfg),
            "--output",
            str(tmp / "p.csv"),
        ],
        api=_predictor_api,
    ),
    "cli-predict-run-id": Row(
        "CLI",
        "`stacking predict RUN_ID` (a run id where a folder goes)",
        DataFileNotFoundError,
        r"no folder '0123abcd4567ef890123abcd4567ef89'; it looks like an MLflow run id: pass "
        r"the run's model as runs:/0123abcd4567ef890123abcd4567ef89/ensemble",
        argv=lambda tmp, cfg: [
            "predict",
            "0123abcd4567ef890123abcd4567ef89",
            str(cfg),
            "--output",
            str(tmp / "p.csv"),
        ],
    ),
    "cli-inspect-missing": Row(
        "CLI",
        "`stacking inspect` on a path that does not exist",
        DataFileNotFoundError,
        r"model path '.*nope\.keras' does not exist",
        **_inspect("nope.keras"),
    ),
    "cli-inspect-not-model": Row(
        "CLI",
        "`stacking inspect` on a YAML file",
        BaseModelError,
        r"'.*c\.yaml' is not a model format tf-stacking reads",
        **_inspect("c.yaml"),
    ),
    "cache-verify-corrupt": Row(
        "cache",
        "`stacking cache verify` with one entry's byte flipped",
        CacheError,
        r"cache '.*cache': 1 of 3 entries are corrupt: \w+\.npy \(checksum mismatch",
        _corrupt_cache,
        argv=lambda tmp, cfg: ["cache", "verify", "--dir", str(tmp / "cache")],
        api=_verify_api,
    ),
    "cache-verify-no-folder": Row(
        "cache",
        "`stacking cache verify --dir` a folder that does not exist",
        ConfigError,
        r"cache verify: '.*cache' is not a folder; pass --dir CACHE_DIR",
        argv=lambda tmp, cfg: ["cache", "verify", "--dir", str(tmp / "cache")],
        api=_verify_api,
    ),
}


def _from_yaml(path: Path, overrides=()):
    from stacking.experiment import Experiment

    return Experiment.from_yaml(path, overrides=list(overrides), progress=False).run()


def _setup(row: Row, tmp: Path, root: Path) -> Path:
    raw = _good_config(root)
    text = row.edit(raw, tmp, root) if row.edit else None
    cfg = tmp / "c.yaml"
    cfg.write_bytes(text if isinstance(text, bytes) else yaml.safe_dump(raw).encode())
    return cfg


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    }


def _cli_argv(row: Row, tmp: Path, cfg: Path) -> list[str]:
    if row.argv is not None:
        return row.argv(tmp, cfg)
    return ["run", str(cfg), "--quiet", *[a for s in row.sets for a in ("--set", s)]]


@pytest.mark.e2e  # a whole experiment, though on the module's own project
def test_bad_inputs_control_project_runs(bad_root, tmp_path, capsys):
    """The project every row breaks in one place runs cleanly as it is."""
    from stacking.cli import main

    cfg = _setup(Row("", "", StackingError, ""), tmp_path, bad_root)
    assert main(["run", str(cfg), "--quiet"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""
    (out,) = (tmp_path / "runs").iterdir()
    assert (out / "oof.parquet").is_file() and out.name.startswith("bad-inputs-")


@pytest.mark.parametrize("row_id", list(ROWS))
def test_bad_input_cli_exit_2_one_line_nothing_written(bad_root, tmp_path, capsys, row_id):
    from stacking.cli import main

    row = ROWS[row_id]
    cfg = _setup(row, tmp_path, bad_root)
    before, around = _snapshot(tmp_path), sorted(os.listdir(tmp_path.parent))
    code = main(_cli_argv(row, tmp_path, cfg))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    assert re.search(row.match, lines[0]), lines[0]
    assert _snapshot(tmp_path) == before  # no results folder, .partial, cache entry
    assert sorted(os.listdir(tmp_path.parent)) == around  # nothing beside it either


@pytest.mark.parametrize("row_id", [r for r, row in ROWS.items() if row.argv is None or row.api])
def test_bad_input_python_api_raises_the_error_class(bad_root, tmp_path, row_id):
    row = ROWS[row_id]
    cfg = _setup(row, tmp_path, bad_root)
    with pytest.raises(row.error, match=row.match):
        if row.api is not None:
            row.api(tmp_path, cfg)
        else:
            _from_yaml(cfg, row.sets)
    assert not (tmp_path / "runs").exists()


def test_bad_input_candidate_function_never_runs(bad_root, tmp_path):
    """The candidate's `touch pwned` is never executed (nor is anything else called)."""
    from stacking.cli import main

    cfg = _setup(ROWS["meta-candidate-function"], tmp_path, bad_root)
    assert main(["run", str(cfg), "--quiet"]) == 2
    with pytest.raises(ConfigError):
        _from_yaml(cfg)
    assert not (tmp_path / "pwned").exists()


def test_bad_input_in_a_subprocess_has_no_tensorflow_noise(bad_root, tmp_path):
    """A row that loads TensorFlow and predicts, as a user runs it: only the error line."""
    row = ROWS["base-input-shape"]
    cfg = _setup(row, tmp_path, bad_root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG", "ABSL"))}
    proc = subprocess.run(
        [sys.executable, "-m", "stacking", *_cli_argv(row, tmp_path, cfg)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: base model 'folds' (fold_0.keras) expects input shape")


def test_bad_inputs_table_has_at_least_35_rows():
    assert len(ROWS) >= 35
    assert {r.area for r in ROWS.values()} >= {"config", "data", "folds", "base models", "meta"}


def _markdown(root: Path, tmp: Path) -> str:
    """The docs/bad-input.md table, with the line the CLI prints for each row."""
    import contextlib
    import io

    from stacking.cli import main

    lines = ["| area | input | what you see (exit 2, one line) | Python API raises |"]
    lines.append("| --- | --- | --- | --- |")
    for n, row in enumerate(ROWS.values()):
        folder = tmp / str(n)
        folder.mkdir()
        os.chdir(folder)
        cfg = _setup(row, folder, root)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(_cli_argv(row, folder, cfg))
        shown = err.getvalue().strip().replace(str(folder), "…").replace(str(root), "…")
        shown = re.sub(r"\b[0-9a-f]{16,64}\b", "…", shown).replace("|", "\\|")
        api = row.error.__name__ if row.argv is None or row.api else "(CLI only)"
        lines.append(f"| {row.area} | {row.what} | `` {shown} `` | `{api}` |")
    return "\n".join(lines)


if __name__ == "__main__":  # print the docs/bad-input.md table
    import tempfile

    with tempfile.TemporaryDirectory() as t:
        base = Path(t)
        (base / "root").mkdir()
        _tables(base / "root")
        _models(base / "root")
        (base / "rows").mkdir()
        print(_markdown(base / "root", base / "rows"))
        os.chdir("/")
