"""Shared fixtures: small tabular projects with real Keras fold models saved to disk.

Models are trained once per session (TensorFlow builds graphs slowly) and shared; every
test that runs an experiment writes its results and MLflow store under its own
``tmp_path``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression

N_SPLITS = 3
N_FEATURES = 6


@dataclass
class Project:
    """A task's data, fold-model directories and a config that stacks them."""

    task: str
    root: Path
    config_path: Path
    raw: dict

    def config(self, tmp_path: Path, **changes) -> Path:
        """A copy of the config with its MLflow store and cache under ``tmp_path``."""
        raw = yaml.safe_load(yaml.safe_dump(self.raw, sort_keys=False))
        raw["tracking"] = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "tests"}
        raw["cache"] = {"dir": str(tmp_path / "cache")}
        for dotted, value in changes.items():
            node = raw
            *parents, last = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / f"{self.task}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path


def _frame(task: str, n: int, seed: int) -> tuple[pd.DataFrame, list[str] | str]:
    if task == "regression":
        X, y = make_regression(n, N_FEATURES, noise=10.0, random_state=seed)
        y = (y - y.mean()) / y.std()
        target: list[str] | str = "y"
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        frame["y"] = y
    elif task == "multilabel":
        X, Y = make_multilabel_classification(n, N_FEATURES, n_classes=3, random_state=seed)
        X = X / X.max()
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        target = ["a", "b", "c"]
        for j, name in enumerate(target):
            frame[name] = Y[:, j]
    else:
        n_classes = 2 if task == "binary" else 3
        X, y = make_classification(
            n, N_FEATURES, n_informative=4, n_classes=n_classes, random_state=seed
        )
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        labels = np.array(["no", "yes"]) if task == "binary" else np.array(["ant", "bee", "cat"])
        frame["y"] = labels[y]
        target = "y"
    frame.insert(0, "id", [f"r{i:04d}" for i in range(n)])
    frame["w"] = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    return frame, target


def build_model(task: str, n_out: int, *, hidden: int, logits: bool = False):
    """A tiny Keras model for ``task``; ``logits=True`` leaves the last layer linear."""
    import keras
    from keras import layers

    inputs = keras.Input((N_FEATURES,))
    x = layers.Dense(hidden, activation="tanh")(inputs) if hidden else inputs
    if task == "regression":
        model = keras.Model(inputs, layers.Dense(1)(x))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return model
    if task in ("binary", "multilabel"):
        units = 1 if task == "binary" else n_out
        act = None if logits else "sigmoid"
        loss = keras.losses.BinaryCrossentropy(from_logits=logits)
    else:
        units, act = n_out, (None if logits else "softmax")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    model = keras.Model(inputs, layers.Dense(units, activation=act)(x))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    return model


def make_project(root: Path, task: str) -> Project:
    """Data (train, test, and disjoint 'external' rows) plus two fold-model directories
    and one external model, with a config that stacks all three."""
    from stacking import load_config, load_dataset, make_fold_plan, train_fold_models

    root.mkdir(parents=True, exist_ok=True)
    frame, target = _frame(task, 360, seed=7)
    train, test, external = frame.iloc[:200], frame.iloc[200:260], frame.iloc[260:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=target).to_parquet(root / "test.parquet", index=False)
    raw = {
        "name": f"tiny-{task}",
        "data": {
            "train": "train.csv",
            "test": "test.parquet",
            "id": "id",
            "target": target,
            "task": task,
            "views": {"x": {"columns": "f_*"}},
        },
        "folds": {
            # Regression takes the default (auto: kfold for a continuous target).
            **({"kind": "kfold"} if task == "multilabel" else {}),
            "n_splits": N_SPLITS,
            "seed": 0,
        },
        "base_models": {
            "wide": {"path": "models/wide", "input": "x"},
            "logit": {"path": "models/logit", "input": "x"},
            "outside": {"path": "models/outside.keras", "input": "x", "trained_on": "external"},
        },
        "metrics": [],
        "meta": {"candidates": ["default"], "bootstrap": 200},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config_path)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    x = data.train[[f"f_{i}" for i in range(N_FEATURES)]].to_numpy("float32")
    n_out = data.n_outputs
    fit = {"epochs": 15, "batch_size": 64}
    train_fold_models(
        lambda: build_model(task, n_out, hidden=16),
        x,
        data.y,
        plan,
        root / "models/wide",
        task=task,
        classes=data.classes,
        fit_kwargs=fit,
    )
    train_fold_models(
        lambda: build_model(task, n_out, hidden=0, logits=True),
        x,
        data.y,
        plan,
        root / "models/logit",
        task=task,
        classes=data.classes,
        fit_kwargs=fit,
    )
    # The external model trains on rows that are neither train nor test rows.
    ext = external.copy()
    ext_x = ext[[f"f_{i}" for i in range(N_FEATURES)]].to_numpy("float32")
    if task == "multilabel":
        ext_y = ext[target].to_numpy()
    elif task == "regression":
        ext_y = ext["y"].to_numpy()
    else:
        ext_y = pd.Categorical(ext["y"], categories=data.classes).codes
    model = build_model(task, n_out, hidden=8)
    model.fit(ext_x, ext_y, verbose=0, **fit)
    model.save(root / "models/outside.keras")
    return Project(task=task, root=root, config_path=config_path, raw=load_raw(config_path))


def load_raw(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    raw["data"]["train"] = str(path.parent / raw["data"]["train"])
    raw["data"]["test"] = str(path.parent / raw["data"]["test"])
    for spec in raw["base_models"].values():
        spec["path"] = str(path.parent / spec["path"])
    return raw


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path, monkeypatch):
    """Run every test from its own folder: MLflow's artifact root (./mlruns), the default
    results folder (./runs) and cache land there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


_projects: dict[str, Project] = {}


@pytest.fixture(scope="session")
def project_factory(tmp_path_factory):
    """``project_factory(task)``: the session's shared project for that task."""

    def get(task: str) -> Project:
        if task not in _projects:
            _projects[task] = make_project(tmp_path_factory.mktemp(f"project-{task}"), task)
        return _projects[task]

    return get


@pytest.fixture(scope="session")
def multiclass_project(project_factory) -> Project:
    return project_factory("multiclass")
