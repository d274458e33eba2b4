"""Prediction files as a base model, and ``stacking folds``: real LightGBM and scikit-learn
models trained on the exported plan, their OOF/test files stacked.

One small project (no TensorFlow model) is built per module: the config, the plan that
``stacking folds`` exports, and the OOF/test files of a LightGBM model and a logistic
regression trained fold by fold on that plan. Tests that break a file work on a copy.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from stacking import Experiment, load_config
from stacking.base import SUM_TOLERANCE, read_prediction_files
from stacking.cli import main
from stacking.errors import DataError, LeakageError
from stacking.folds import FoldPlan

CLASSES = ["ant", "bee", "cat"]
FEATURES = [f"f_{i}" for i in range(5)]


@dataclass
class PredictionProject:
    root: Path
    raw: dict
    plan: pd.DataFrame

    def config(self, folder: Path, **changes) -> Path:
        """A copy of the config in ``folder`` (files copied beside it), with its cache under
        ``folder``; ``changes`` set dotted keys."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "test.csv", "preds"):
            src = self.root / name
            if src.is_dir():
                shutil.copytree(src, folder / name, dirs_exist_ok=True)
            elif not (folder / name).exists():
                shutil.copy(src, folder / name)
        raw = yaml.safe_load(yaml.safe_dump(self.raw))
        raw["cache"] = {"dir": str(folder / "cache")}
        for dotted, value in changes.items():
            node = raw
            *parents, last = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path


def train_on_plan(make, X, y, folds, X_test):
    """OOF and test probabilities of one model per fold of the plan (test: their mean)."""
    oof = np.zeros((len(X), len(CLASSES)))
    test = np.zeros((len(X_test), len(CLASSES)))
    for k in range(int(folds.max()) + 1):
        model = make().fit(X[folds != k], y[folds != k])
        oof[folds == k] = model.predict_proba(X[folds == k])
        test += model.predict_proba(X_test) / (int(folds.max()) + 1)
    return oof, test


def write_predictions(root, ids, folds, test_ids, oof, test, stem, oof_ext, test_ext):
    frame = pd.DataFrame(oof, columns=CLASSES)
    frame.insert(0, "fold", folds)
    frame.insert(0, "id", ids)
    frame = frame.sample(frac=1.0, random_state=1)  # rows in any order: matched by id
    frame = frame[["id", "fold", "cat", "ant", "bee"]]  # class columns in any order
    test_frame = pd.DataFrame(test, columns=CLASSES)
    test_frame.insert(0, "id", test_ids)
    for table, path in (
        (frame, f"preds/{stem}_oof.{oof_ext}"),
        (test_frame, f"preds/{stem}_test.{test_ext}"),
    ):
        if path.endswith(".csv"):
            table.to_csv(root / path, index=False)
        else:
            table.to_parquet(root / path, index=False)


@pytest.fixture(scope="module")
def prediction_project(tmp_path_factory) -> PredictionProject:
    root = tmp_path_factory.mktemp("prediction-files")
    X, y = make_classification(
        300,
        len(FEATURES),
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        random_state=3,
        class_sep=0.8,
    )
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", [f"r{i:04d}" for i in range(len(frame))])
    frame["y"] = np.array(CLASSES)[y]
    frame.iloc[:240].to_csv(root / "train.csv", index=False)
    frame.iloc[240:].drop(columns="y").to_csv(root / "test.csv", index=False)
    (root / "preds").mkdir()
    raw = {
        "name": "prediction-files",
        "data": {"train": "train.csv", "test": "test.csv", "id": "id", "target": "y"},
        "folds": {"kind": "stratified", "n_splits": 3, "seed": 0},
        "base_models": {
            "lgbm": {
                "predictions": {"oof": "preds/lgbm_oof.parquet", "test": "preds/lgbm_test.csv"}
            },
            "logreg": {
                "predictions": {"oof": "preds/logreg_oof.csv", "test": "preds/logreg_test.parquet"}
            },
        },
        "meta": {"candidates": ["default", "mean"], "bootstrap": 20},
        "tracking": {"kind": "none"},
        "plots": False,
    }
    (root / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    # The plan exported before any model exists, then models trained on it elsewhere.
    assert main(["folds", str(root / "config.yaml"), "--output", str(root / "folds.csv")]) == 0
    plan = pd.read_csv(root / "folds.csv", dtype={"id": str})
    train = pd.read_csv(root / "train.csv").set_index("id").loc[plan["id"]]
    test = pd.read_csv(root / "test.csv")
    X_train, y_train = train[FEATURES].to_numpy(), train["y"].to_numpy()
    folds = plan["fold"].to_numpy()
    X_test = test[FEATURES].to_numpy()
    lgbm = lambda: lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1)  # noqa: E731
    oof, tst = train_on_plan(lgbm, X_train, y_train, folds, X_test)
    write_predictions(root, plan["id"], folds, test["id"], oof, tst, "lgbm", "parquet", "csv")
    logreg = lambda: LogisticRegression(max_iter=500)  # noqa: E731
    oof, tst = train_on_plan(logreg, X_train, y_train, folds, X_test)
    write_predictions(root, plan["id"], folds, test["id"], oof, tst, "logreg", "csv", "parquet")
    return PredictionProject(root=root, raw=raw, plan=plan)


def test_folds_command_writes_the_plan_the_experiment_uses(prediction_project, tmp_path):
    cfg = load_config(prediction_project.config(tmp_path))
    from stacking import load_dataset, make_fold_plan

    plan = make_fold_plan(cfg.folds, load_dataset(cfg.data))
    exported = FoldPlan.from_csv(prediction_project.root / "folds.csv")
    assert exported.digest == plan.digest
    assert exported.ids.tolist() == plan.ids.tolist()
    # The exported file read back as the experiment's folds gives the same plan.
    cfg = load_config(
        prediction_project.config(
            tmp_path, folds={"file": str(prediction_project.root / "folds.csv")}
        )
    )
    again = make_fold_plan(cfg.folds, load_dataset(cfg.data))
    assert again.digest == plan.digest and np.array_equal(again.folds, plan.folds)


def test_folds_command_needs_no_base_model_yet(tmp_path, capsys):
    """The plan comes first: a config as `stacking init` writes it (data and folds, an
    empty base_models:) exports its fold plan; `stacking run` still asks for a model."""
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(40)], "x": range(40)})
    rows["y"] = ["a", "b"] * 20
    rows.to_csv(tmp_path / "train.csv", index=False)
    config = tmp_path / "start.yaml"
    config.write_text(
        "data: {train: train.csv, id: id, target: y, views: {numeric: {columns: [x]}}}\n"
        "folds: {n_splits: 4, seed: 0}\n"
        "base_models:\n"
        "#  my_model: {path: models/my_model, input: numeric}\n"
    )
    out = tmp_path / "folds.csv"
    assert main(["folds", str(config), "--output", str(out)]) == 0, capsys.readouterr().err
    plan = FoldPlan.from_csv(out)
    assert sorted(plan.ids.tolist()) == sorted(rows["id"]) and plan.n_splits == 4
    capsys.readouterr()
    assert main(["run", str(config), "--output", str(tmp_path / "run")]) == 2
    assert "no base models" in capsys.readouterr().err


def test_oof_columns_equal_the_files_exactly(prediction_project, tmp_path):
    result = Experiment.from_yaml(
        prediction_project.config(tmp_path), output_dir=tmp_path / "out", progress=False
    ).run()
    for stem, ext in (("lgbm", "parquet"), ("logreg", "csv")):
        path = prediction_project.root / f"preds/{stem}_oof.{ext}"
        file = pd.read_parquet(path) if ext == "parquet" else pd.read_csv(path)
        file = file.set_index("id").loc[result.oof["id"]]
        for c in CLASSES:
            np.testing.assert_array_equal(result.oof[f"{stem}__{c}"].to_numpy(), file[c].to_numpy())
        assert (file["fold"].to_numpy() == result.oof["fold"].to_numpy()).all()
    # The test file's values are the member's test predictions, row by row.
    test_file = pd.read_csv(prediction_project.root / "preds/lgbm_test.csv")
    got = result.test_predictions.set_index("id").loc[test_file["id"]]
    for c in CLASSES:
        np.testing.assert_array_equal(got[f"lgbm__{c}"].to_numpy(), test_file[c].to_numpy())
    # A stack of two honest members is scored like any other.
    assert set(result.leaderboard.model) >= {"lgbm", "logreg", "base_mean", "mean"}


def test_checked_files_are_cached_by_content_and_rechecked_when_changed(
    prediction_project, tmp_path
):
    """A warm rerun takes the checked arrays from the cache (no entry rewritten); a changed
    file has another key, so it is read and checked again and its values used."""
    config = prediction_project.config(tmp_path)

    def run(out: str):
        return Experiment.from_yaml(config, output_dir=tmp_path / out, progress=False).run()

    def entries() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")}

    first = run("one")
    cached = entries()
    assert len(cached) == 4  # two members, an OOF and a test entry each
    second = run("two")
    assert entries() == cached
    pd.testing.assert_frame_equal(first.oof, second.oof)
    swapped = lambda f: f.rename(columns={"ant": "bee", "bee": "ant"})  # noqa: E731
    _edit(tmp_path / "preds/logreg_oof.csv", swapped)
    third = run("three")
    assert len(entries()) == 5 and set(cached) < set(entries())
    np.testing.assert_array_equal(third.oof["logreg__ant"], first.oof["logreg__bee"])


def _edit(path: Path, change) -> None:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    frame = change(frame)
    frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(
        path, index=False
    )


def _move_fold(f):
    f = f.sort_values("id").reset_index(drop=True)
    f.loc[3, "fold"] = (f.loc[3, "fold"] + 1) % 3
    return f


REFUSED = [
    ("lgbm_oof.parquet", _move_fold, r"1 row\(s\) were predicted in another fold.*'r0003'"),
    ("lgbm_oof.parquet", lambda f: f.drop(columns="fold"), "no 'fold' column"),
    ("lgbm_oof.parquet", lambda f: f[f.id != "r0007"], "lacks 1 of the data's id.*'r0007'"),
    ("lgbm_oof.parquet", lambda f: pd.concat([f, f[f.id == "r0009"]]), "repeats id.*'r0009'"),
    (
        "lgbm_oof.parquet",
        lambda f: pd.concat([f, f[f.id == "r0009"].assign(id="zz")]),
        "1 id.*not rows of the data.*'zz'",
    ),
    ("lgbm_test.csv", lambda f: f[f.id != "r0250"], "test file.*lacks 1.*'r0250'"),
    (
        "lgbm_test.csv",
        lambda f: f.rename(columns={"bee": "Bee"}),
        r"no column\(s\) \['bee'\].*'Bee'",
    ),
    ("logreg_oof.csv", lambda f: f.drop(columns="cat"), r"no column\(s\) \['cat'\]"),
    ("logreg_oof.csv", lambda f: f.assign(ant=f.ant * 1.5), "outside \\[0, 1\\]"),
    ("logreg_oof.csv", lambda f: f.assign(ant=f.ant * 0.9), "sum to .*not 1 \\(tolerance 0.001\\)"),
    (
        "logreg_oof.csv",
        lambda f: f.assign(bee=np.where(f.id == "r0011", np.nan, f.bee)),
        "NaN.*'r0011'",
    ),
]


@pytest.mark.parametrize(("file", "change", "message"), REFUSED)
def test_a_bad_prediction_file_is_refused_with_nothing_written(
    prediction_project, tmp_path, capsys, file, change, message
):
    config = prediction_project.config(tmp_path)
    _edit(tmp_path / "preds" / file, change)
    code = main(["run", str(config), "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: base model "), err
    assert file in err

    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not list(tmp_path.glob(".out*"))


def test_the_checks_hold_a_tolerance_and_name_the_fix(prediction_project, tmp_path):
    """Within the stated tolerance a row is accepted as is; a fold mismatch says how to fix."""
    config = load_config(prediction_project.config(tmp_path))
    spec = config.base_models["logreg"].predictions
    _edit(spec.oof, lambda f: f.assign(ant=f.ant + SUM_TOLERANCE / 2))
    from stacking import load_dataset, make_fold_plan

    data = load_dataset(config.data)
    plan = make_fold_plan(config.folds, data)
    kw = dict(id_column="id", test_ids=None, task="multiclass", output_names=CLASSES)
    files = read_prediction_files("logreg", spec, ids=data.ids, folds=plan.folds, **kw)
    assert files.oof.shape == (240, 3) and "oof" in files.digests
    with pytest.raises(LeakageError, match=re.escape("stacking folds CONFIG --output folds.csv")):
        read_prediction_files("logreg", spec, ids=data.ids, folds=(plan.folds + 1) % 3, **kw)
    with pytest.raises(DataError, match="sum to"):
        _edit(spec.oof, lambda f: f.assign(ant=f.ant + SUM_TOLERANCE * 2))
        read_prediction_files("logreg", spec, ids=data.ids, folds=plan.folds, **kw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_models.lgbm.input": "x"}, r"\['input'\] do not apply to prediction files"),
        ({"base_models.lgbm.outputs_are": "logits"}, "do not apply to prediction files"),
        ({"base_models.lgbm.predictions.oof": None}, "oof"),
        ({"base_models.lgbm.predictions.test": None}, "names no `test` file"),
        ({"folds.file": "missing.csv"}, "folds.file .*missing.csv' does not exist"),
    ],
)
def test_misconfigured_prediction_files_are_refused(
    prediction_project, tmp_path, capsys, changes, message
):
    config = prediction_project.config(tmp_path, **changes)
    code = main(["run", str(config), "--output", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1

    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def _lgbm_member(project, folder: Path, plan_csv: Path) -> dict:
    """OOF/test files of a LightGBM model trained per fold of ``project``'s exported plan."""
    plan = pd.read_csv(plan_csv, dtype={"id": str})
    train = pd.read_csv(project.root / "train.csv").set_index("id").loc[plan["id"]]
    test = pd.read_parquet(project.root / "test.parquet")
    features = [c for c in train.columns if c.startswith("f_")]
    lgbm = lambda: lgb.LGBMClassifier(n_estimators=15, num_leaves=5, verbose=-1)  # noqa: E731
    folds = plan["fold"].to_numpy()
    oof, tst = train_on_plan(
        lgbm, train[features].to_numpy(), train["y"].to_numpy(), folds, test[features].to_numpy()
    )
    (folder / "preds").mkdir(parents=True, exist_ok=True)
    write_predictions(folder, plan["id"], folds, test["id"], oof, tst, "lgbm", "parquet", "csv")
    return {
        "oof": str(folder / "preds/lgbm_oof.parquet"),
        "test": str(folder / "preds/lgbm_test.csv"),
    }


def test_keras_and_prediction_files_record_reproduce_and_serve(
    multiclass_project, tmp_path, capsys
):
    """A stack of Keras fold models, an external Keras model and LightGBM prediction files:
    recorded in MLflow with the files' digests, reproduced exactly, served from columns;
    a changed prediction file is refused at reproduce."""
    from conftest import logged_ensemble

    from stacking.base import path_digest
    from stacking.predictor import load_predictor

    base = multiclass_project.config(tmp_path / "plan")
    assert main(["folds", str(base), "--output", str(tmp_path / "folds.csv")]) == 0
    files = _lgbm_member(multiclass_project, tmp_path, tmp_path / "folds.csv")
    config = multiclass_project.config(
        tmp_path, **{"base_models.lgbm": {"predictions": files}, "meta.candidates": ["default"]}
    )
    assert main(["run", str(config), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    uri = load_config(config).tracking.uri
    import mlflow

    run_id = next(
        line.split()[-1] for line in capsys.readouterr().out.splitlines() if "mlflow run" in line
    )
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.data.tags["stacking.predictions.lgbm.oof_digest"] == path_digest(Path(files["oof"]))
    assert run.data.tags["stacking.predictions.lgbm.test_digest"] == path_digest(
        Path(files["test"])
    )
    children = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    lgbm_run = next(c for c in children if c.data.tags.get("mlflow.runName") == "lgbm")
    assert lgbm_run.data.params["predictions.oof"] == files["oof"]
    assert lgbm_run.data.params["predictions.oof_sha256"] == path_digest(Path(files["oof"]))

    # Served rows carry the member's columns; CLI predict and the pyfunc model give the
    # run's test predictions.
    expected = pd.read_parquet(tmp_path / "out/test_predictions.parquet")
    rows = pd.read_parquet(multiclass_project.root / "test.parquet")
    given = pd.read_csv(files["test"]).set_index("id").loc[rows["id"]]
    for c in CLASSES:
        rows[f"lgbm__{c}"] = given[c].to_numpy()
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    argv = ["predict", str(tmp_path / "out"), str(tmp_path / "rows.parquet")]
    assert main([*argv, "--output", str(tmp_path / "served.parquet")]) == 0
    served = pd.read_parquet(tmp_path / "served.parquet")
    ensemble = [c for c in expected.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(served[ensemble], expected[ensemble], rtol=0, atol=1e-12)
    assert served["prediction"].tolist() == expected["prediction"].tolist()
    model, _ = logged_ensemble(uri, run_id)
    inputs = [c.name for c in model.metadata.get_input_schema().inputs]
    assert {f"lgbm__{c}" for c in CLASSES} <= set(inputs)
    got = model.predict(rows)
    np.testing.assert_allclose(got[ensemble], expected[ensemble], rtol=0, atol=1e-12)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['lgbm__bee'\] of base model 'lgbm'"):
        load_predictor(tmp_path / "out").predict(rows.drop(columns="lgbm__bee"))
    with pytest.raises(Exception, match="lgbm__bee"):  # MLflow's signature check
        model.predict(rows.drop(columns="lgbm__bee"))
    capsys.readouterr()

    # Reproduced exactly, then refused once the test file changed.
    again = ["reproduce", run_id, "--tracking-uri", uri, "--output", str(tmp_path / "re")]
    assert main(again) == 0
    out = capsys.readouterr().out
    assert re.search(r"reproduced: ([1-9]\d*) of \1 recorded cv_ metrics equal", out), out
    _edit(Path(files["test"]), lambda f: f.assign(ant=f.ant.round(3)))
    again[-1] = str(tmp_path / "re2")
    assert main(again) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'lgbm'" in err and "changed since that run" in err
    assert not (tmp_path / "re2").exists()


def _task_frame(task: str):
    """A small table of ``task`` and its target column(s), ids not in row order."""
    from sklearn.datasets import make_multilabel_classification, make_regression

    if task == "regression":
        X, y = make_regression(160, 4, noise=5.0, random_state=0)
        frame = pd.DataFrame(X, columns=FEATURES[:4]).assign(y=y)
        return frame, ["y"]
    if task == "multilabel":
        X, Y = make_multilabel_classification(160, 4, n_classes=3, random_state=0)
        frame = pd.DataFrame(X, columns=FEATURES[:4])
        return frame.assign(a=Y[:, 0], b=Y[:, 1], c=Y[:, 2]), ["a", "b", "c"]
    X, y = make_classification(160, 4, n_informative=3, n_redundant=0, random_state=0)
    return pd.DataFrame(X, columns=FEATURES[:4]).assign(y=np.array(["no", "yes"])[y]), ["y"]


def _fit_predict(task, X, y, X_new):
    from sklearn.linear_model import Ridge
    from sklearn.multioutput import MultiOutputClassifier

    if task == "regression":
        return Ridge().fit(X, y[:, 0]).predict(X_new)[:, None], ["prediction"]
    if task == "multilabel":
        model = MultiOutputClassifier(LogisticRegression()).fit(X, y)
        return np.column_stack([p[:, 1] for p in model.predict_proba(X_new)]), ["a", "b", "c"]
    model = LogisticRegression().fit(X, y[:, 0])
    return model.predict_proba(X_new), [str(c) for c in model.classes_]


@pytest.mark.parametrize("task", ["binary", "multilabel", "regression"])
def test_every_task_stacks_files_and_serves_them_from_columns(tmp_path, task):
    """OOF columns equal the files; rows served with the member's level-1 columns give the
    run's test predictions (binary: the positive class's column only)."""
    from stacking.predictor import load_predictor

    frame, target = _task_frame(task)
    ids = [(i * 37) % 1000 for i in range(len(frame))]  # integer ids for regression
    frame.insert(0, "id", ids if task == "regression" else [f"q{i:03d}" for i in ids])
    frame.iloc[:120].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[120:].drop(columns=target).to_csv(tmp_path / "test.csv", index=False)
    raw = {
        "data": {
            "train": "train.csv",
            "test": "test.csv",
            "id": "id",
            "target": target if task == "multilabel" else target[0],
            "task": task,
        },
        "folds": {"kind": "kfold", "n_splits": 3},
        "base_models": {"sk": {"predictions": {"oof": "oof.csv", "test": "test_preds.parquet"}}},
        "meta": {"candidates": ["mean"], "bootstrap": 0},
        "tracking": {"kind": "none"},
        "plots": False,
        "cache": {"dir": str(tmp_path / "cache")},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["folds", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "f.csv")]) == 0
    plan = pd.read_csv(tmp_path / "f.csv")
    train = frame.iloc[:120].set_index("id").loc[plan["id"]]
    X, Y = train[FEATURES[:4]].to_numpy(), train[target].to_numpy()
    oof = None
    for k in range(3):
        fold = plan["fold"].to_numpy() == k
        part, columns = _fit_predict(task, X[~fold], Y[~fold], X[fold])
        oof = np.zeros((len(X), part.shape[1])) if oof is None else oof
        oof[fold] = part
    new = frame.iloc[120:]
    test, columns = _fit_predict(task, X, Y, new[FEATURES[:4]].to_numpy())
    pd.DataFrame(oof, columns=columns).assign(id=plan["id"], fold=plan["fold"]).to_csv(
        tmp_path / "oof.csv", index=False
    )
    pd.DataFrame(test, columns=columns).assign(id=new["id"].to_numpy()).to_parquet(
        tmp_path / "test_preds.parquet", index=False
    )
    result = Experiment.from_yaml(
        tmp_path / "c.yaml", output_dir=tmp_path / "o", progress=False
    ).run()
    level1 = {"binary": ["yes"], "regression": ["pred"]}.get(task, columns)
    file_columns = {"binary": ["yes"]}.get(task, columns)
    for name, col in zip(level1, file_columns):
        by_id = result.oof.set_index("id")[f"sk__{name}"].loc[plan["id"]]
        np.testing.assert_array_equal(by_id.to_numpy(), oof[:, columns.index(col)])
    rows = new.drop(columns=target).reset_index(drop=True)
    for name, col in zip(level1, file_columns):
        rows[f"sk__{name}"] = test[:, columns.index(col)]
    served = load_predictor(tmp_path / "o").predict(rows)
    expected = result.test_predictions
    out = [c for c in expected.columns if c.startswith("ensemble__") or c == "prediction"]
    pd.testing.assert_frame_equal(served[out], expected[out], check_exact=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f[f.id != "r0005"],
            r"does not hold exactly the training rows \(lacking e.g. \['r0005'\]",
        ),
        (lambda f: pd.concat([f, f.head(1)]), r"repeats id\(s\) \['r"),
        (lambda f: f.assign(fold=f.fold.astype(float) + 0.5), "`fold` must hold integers"),
    ],
)
def test_a_folds_file_that_is_not_the_datas_plan_is_refused(
    prediction_project, tmp_path, capsys, change, message
):
    plan = pd.read_csv(prediction_project.root / "folds.csv", dtype={"id": str})
    change(plan).to_csv(tmp_path / "folds.csv", index=False)
    config = prediction_project.config(tmp_path, folds={"file": "folds.csv"})
    assert main(["run", str(config), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_folds_command_refuses_a_non_csv_output(prediction_project, tmp_path, capsys):
    config = prediction_project.config(tmp_path)
    assert main(["folds", str(config), "--output", str(tmp_path / "folds.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "end it in .csv" in err
    assert not list(tmp_path.glob("*folds.txt*"))


@pytest.mark.slow
def test_mlflow_models_serve_answers_rows_carrying_the_members_columns(
    prediction_project, tmp_path
):
    """`mlflow models serve` of an ensemble of prediction-file members: rows that carry the
    members' level-1 columns are answered with the run's test predictions over HTTP."""
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import mlflow
    from conftest import sqlite_store

    uri = sqlite_store(tmp_path)
    config = prediction_project.config(tmp_path, tracking={"uri": uri, "experiment": "serve"})
    result = Experiment.from_yaml(config, output_dir=tmp_path / "out", progress=False).run()
    model_id = (
        mlflow.MlflowClient(uri).get_run(result.run_id).data.tags["stacking.ensemble_model_id"]
    )
    rows = pd.read_csv(tmp_path / "test.csv")
    for stem, ext in (("lgbm", "csv"), ("logreg", "parquet")):
        path = tmp_path / f"preds/{stem}_test.{ext}"
        given = (pd.read_csv(path) if ext == "csv" else pd.read_parquet(path)).set_index("id")
        for c in CLASSES:
            rows[f"{stem}__{c}"] = given.loc[rows["id"], c].to_numpy()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # mlflow runs `uvicorn` from the venv
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve"]
    cmd += ["-m", f"models:/{model_id}", "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(1)

        def ask(frame: pd.DataFrame):
            split = json.loads(frame.to_json(orient="split", double_precision=15))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=json.dumps({"dataframe_split": split}).encode(),
                headers={"Content-Type": "application/json"},
            )
            return urllib.request.urlopen(request, timeout=120)

        answer = json.loads(ask(rows).read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            ask(rows.drop(columns="lgbm__bee"))
        assert "lgbm__bee" in refused.value.read().decode()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()
    served = pd.DataFrame(answer["predictions"])
    ensemble = [c for c in result.test_predictions.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-9
    )
