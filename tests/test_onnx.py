"""ONNX members: scikit-learn and LightGBM models trained on the experiment's fold plan,
converted to ONNX, stacked with Keras models and a prediction-file member; their numbers
against direct ONNX Runtime calls and the files, the run's record, ``reproduce`` and the
served model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import N_FEATURES, logged_ensemble, serve_and_predict

from stacking import BaseModelError, ConfigError, Experiment
from stacking.base import load_base_model, resolve_base_model
from stacking.cli import main
from stacking.config import BaseModelSpec

ort = pytest.importorskip("onnxruntime", reason="the dev extra installs onnxruntime")
FEATURES = [f"f_{i}" for i in range(N_FEATURES)]
CLASSES = ["ant", "bee", "cat"]


def _lr():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def _lgbm():
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=15, num_leaves=7, min_child_samples=5, verbose=-1)


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _write_prediction_files(data, plan, x, project, tmp) -> None:
    """OOF and test files of a scikit-learn model fitted per fold of ``plan`` outside the
    framework, as a competitor's notebook writes them (class names as columns)."""
    from sklearn.linear_model import LogisticRegression

    test = pd.read_parquet(project.root / "test.parquet")
    test_x = test[FEATURES].to_numpy("float32")
    oof = np.empty((len(x), len(CLASSES)))
    on_test = []
    for k in range(plan.n_splits):
        rows = plan.test_index(k)
        train_rows = np.setdiff1d(np.arange(len(x)), rows)
        model = LogisticRegression(C=0.3, max_iter=500).fit(x[train_rows], data.y[train_rows])
        oof[rows] = model.predict_proba(x[rows])
        on_test.append(model.predict_proba(test_x))
    frame = pd.DataFrame(oof, columns=CLASSES).assign(id=plan.ids, fold=plan.folds)
    frame.sample(frac=1.0, random_state=0).to_parquet(tmp / "files_oof.parquet")  # any order
    pd.DataFrame(np.mean(on_test, axis=0), columns=CLASSES).assign(id=test["id"]).to_csv(
        tmp / "files_test.csv", index=False
    )


def _served_rows(project, tmp) -> pd.DataFrame:
    """The test rows as a client sends them: the features the models read, plus the
    prediction-file member's test predictions in its level-1 columns."""
    rows = pd.read_parquet(project.root / "test.parquet")
    given = pd.read_csv(tmp / "files_test.csv").rename(columns={c: f"files__{c}" for c in CLASSES})
    return rows.merge(given, on="id", how="left", validate="one_to_one")


@pytest.fixture(scope="module")
def onnx_run(multiclass_project, tmp_path_factory):
    """The shared multiclass project's Keras fold set stacked with two ONNX fold sets
    (a scikit-learn pipeline, LightGBM) and one external ONNX model with ZipMap output."""
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from stacking import load_config, load_dataset, make_fold_plan, train_onnx_fold_models

    tmp = tmp_path_factory.mktemp("onnx")
    cfg = load_config(multiclass_project.config_path)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    x = data.train[FEATURES].to_numpy("float32")
    for name, make in (("lr", _lr), ("lgbm", _lgbm)):
        train_onnx_fold_models(
            make, x, data.y, plan, tmp / name, task=data.task, classes=data.classes
        )
    # Trained on other rows of the same kind: an external model, converted WITH ZipMap.
    ext_x, ext_y = make_classification(
        120, N_FEATURES, n_informative=4, n_classes=3, random_state=3
    )
    external = LogisticRegression(max_iter=500).fit(ext_x.astype("float32"), ext_y)
    (tmp / "zip.onnx").write_bytes(
        to_onnx(external, ext_x[:1].astype("float32")).SerializeToString()
    )
    # A model trained elsewhere on the same plan, given only by its prediction files.
    _write_prediction_files(data, plan, x, multiclass_project, tmp)
    config = multiclass_project.config(
        tmp,
        **{
            "base_models.files": {
                "predictions": {
                    "oof": str(tmp / "files_oof.parquet"),
                    "test": str(tmp / "files_test.csv"),
                }
            },
            "base_models.lr": {"path": str(tmp / "lr"), "input": "x"},
            "base_models.lgbm": {"path": str(tmp / "lgbm"), "input": "x"},
            "base_models.zip": {
                "path": str(tmp / "zip.onnx"),
                "input": "x",
                "trained_on": "external",
            },
            "meta.candidates": ["logistic", "mean"],
            "meta.bootstrap": 0,
        },
    )
    result = Experiment.from_yaml(config, output_dir=tmp / "out", progress=False).run()
    return result, tmp, config, plan


def test_onnx_fold_set_oof_equals_direct_onnxruntime_calls(onnx_run, multiclass_project):
    result, tmp, _, plan = onnx_run
    train = pd.read_csv(multiclass_project.root / "train.csv")
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    assert result.oof["id"].tolist() == train["id"].tolist()
    for name in ("lr", "lgbm"):
        columns = [f"{name}__{c}" for c in CLASSES]
        expected = np.empty((len(train), 3))
        on_test = []
        for k in range(plan.n_splits):
            session = _session(tmp / name / f"fold_{k}.onnx")
            rows = plan.test_index(k)
            fold_x = train[FEATURES].to_numpy("float32")[rows]
            expected[rows] = session.run(["probabilities"], {"x": fold_x})[0]
            on_test.append(
                session.run(["probabilities"], {"x": test[FEATURES].to_numpy("float32")})[0]
            )
        # Row i of fold k from fold model k only, value for value.
        np.testing.assert_array_equal(result.oof[columns].to_numpy(), expected)
        # Test rows: the mean of the K fold models.
        np.testing.assert_allclose(
            result.test_predictions[columns].to_numpy(),
            np.mean(np.asarray(on_test, dtype=np.float64), axis=0),
            atol=1e-12,
        )
    # The ZipMap output ({class: p} per row) became the same (n, C) columns.
    zipped = _session(tmp / "zip.onnx").run(
        ["output_probability"], {"X": train[FEATURES].to_numpy("float32")}
    )[0]
    direct = np.array([[row[c] for c in range(3)] for row in zipped])
    np.testing.assert_array_equal(result.oof[[f"zip__{c}" for c in CLASSES]].to_numpy(), direct)
    # The prediction-file member: its OOF columns are the file's values, row by row by id.
    given = pd.read_parquet(tmp / "files_oof.parquet").set_index("id").loc[result.oof["id"]]
    np.testing.assert_array_equal(
        result.oof[[f"files__{c}" for c in CLASSES]].to_numpy(), given[CLASSES].to_numpy()
    )
    assert {"wide", "logit", "outside", "lr", "lgbm", "zip", "files"} <= set(
        result.leaderboard.model
    )


def test_mixed_keras_onnx_files_stack_is_recorded_and_served_exactly(onnx_run, multiclass_project):
    import mlflow

    result, tmp, config, _ = onnx_run
    from stacking import load_config

    uri = load_config(config).tracking.uri
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id)
    for name in ("lr", "lgbm", "zip", "wide", "files"):
        assert f"base.{name}.cv_log_loss" in run.data.metrics
    model, model_id = logged_ensemble(uri, result.run_id)
    served = model.predict(_served_rows(multiclass_project, tmp))
    ensemble = [c for c in result.test_predictions.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-12
    )
    # The ONNX files travel with the model, and so does the runtime that reads them.
    mlflow.set_tracking_uri(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}"))
    finally:
        mlflow.set_tracking_uri(None)
    assert [p.name for p in local.rglob("*.onnx")] != []
    requirements = (local / "requirements.txt").read_text()
    assert f"onnxruntime=={ort.__version__}" in requirements


def test_cli_predict_serves_the_mixed_stack_exactly(onnx_run, multiclass_project, tmp_path):
    result, tmp, _, _ = onnx_run
    out = tmp_path / "served.csv"
    rows = tmp_path / "rows.parquet"
    _served_rows(multiclass_project, tmp).to_parquet(rows)
    assert main(["predict", str(tmp / "out"), str(rows), "--output", str(out)]) == 0
    served = pd.read_csv(out)
    ensemble = [c for c in result.test_predictions.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-12
    )


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_the_run(onnx_run, multiclass_project, tmp_path):
    """The logged Keras + ONNX + prediction-file ensemble behind `mlflow models serve`,
    over HTTP, given the file member's columns."""
    import mlflow

    result, tmp, config, _ = onnx_run
    from stacking import load_config

    uri = load_config(config).tracking.uri
    tags = mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).data.tags
    rows = _served_rows(multiclass_project, tmp)
    served = serve_and_predict(uri, tags["stacking.ensemble_model_id"], rows, cwd=tmp_path)
    ensemble = [c for c in result.test_predictions.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-9
    )


def test_mixed_keras_onnx_files_stack_reproduces_exactly(onnx_run, tmp_path, capsys):
    result, _, config, _ = onnx_run
    from stacking import load_config

    uri = load_config(config).tracking.uri
    code = main(
        ["reproduce", result.run_id, "--tracking-uri", uri, "--output", str(tmp_path / "again")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"reproduced: ([1-9]\d*) of \1 recorded cv_ metrics equal", out), out
    again = pd.read_parquet(tmp_path / "again" / "oof.parquet")
    pd.testing.assert_frame_equal(again, result.oof)


def test_cli_inspect_shows_an_onnx_fold_set(onnx_run, capsys):
    _, tmp, _, _ = onnx_run
    assert main(["inspect", str(tmp / "lgbm")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == "onnx" and shown["kind"] == "onnx"
    assert [i["name"] for i in shown["inputs"]] == ["x"]
    assert shown["inputs"][0]["shape"] == [N_FEATURES]
    assert [o["name"] for o in shown["outputs"]] == ["label", "probabilities"]
    assert shown["manifest"]["format"] == "onnx"
    assert shown["hashes"] == "match"


def test_replaced_onnx_fold_model_is_refused(onnx_run, tmp_path, multiclass_project):
    import shutil

    _, tmp, _, plan = onnx_run
    copy = shutil.copytree(tmp / "lr", tmp_path / "lr")
    shutil.copy(tmp / "lgbm" / "fold_1.onnx", copy / "fold_1.onnx")
    with pytest.raises(BaseModelError, match=r"fold_1\.onnx' differs from the file recorded"):
        resolve_base_model(
            "lr",
            BaseModelSpec(path=copy, input="x"),
            folds_digest=plan.digest,
            n_splits=plan.n_splits,
            task="multiclass",
            classes=CLASSES,
        )


def test_fold_models_exist_knows_an_onnx_fold_set(onnx_run, tmp_path):
    """What lets a training script skip a fold set already trained for the plan."""
    import shutil

    from stacking.folds import FoldPlan
    from stacking.training import fold_models_exist

    _, tmp, _, plan = onnx_run
    assert fold_models_exist(tmp / "lgbm", plan)
    other = FoldPlan(ids=plan.ids, folds=(plan.folds + 1) % plan.n_splits)
    assert not fold_models_exist(tmp / "lgbm", other)
    copy = shutil.copytree(tmp / "lgbm", tmp_path / "lgbm")
    shutil.copy(tmp / "lr" / "fold_0.onnx", copy / "fold_0.onnx")
    assert not fold_models_exist(copy, plan)


def test_converted_models_predict_like_their_estimators(tmp_path):
    """scikit-learn and LightGBM, classifier and regressor: the loaded ONNX model gives the
    estimator's own predictions (to float32 precision); ZipMap or not, the same array."""
    from lightgbm import LGBMRegressor
    from skl2onnx import to_onnx
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    from stacking.training import to_onnx_bytes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)
    for estimator in (_lr(), _lgbm()):
        estimator.fit(x, y)
        path = tmp_path / f"{type(estimator).__name__}.onnx"
        path.write_bytes(to_onnx_bytes(estimator, 5, input_name="feats"))
        model = load_base_model(path)
        assert model.output_names == ["label", "probabilities"]
        assert model.output_names[model.output_index] == "probabilities"  # not the labels
        got = model.predict([x], batch_size=32)
        np.testing.assert_allclose(got, estimator.predict_proba(x), atol=1e-5)
    zipped = tmp_path / "zipmap.onnx"
    zipped.write_bytes(to_onnx(_lr().fit(x, y), x[:1]).SerializeToString())
    np.testing.assert_allclose(
        load_base_model(zipped).predict([x], batch_size=7),
        load_base_model(tmp_path / "Pipeline.onnx").predict([x], batch_size=7),
        atol=1e-6,
    )
    xr, yr = make_regression(60, 5, random_state=0)
    for estimator in (Ridge(), LGBMRegressor(n_estimators=10, min_child_samples=5, verbose=-1)):
        estimator.fit(xr.astype("float32"), yr)
        path = tmp_path / f"reg_{type(estimator).__name__}.onnx"
        path.write_bytes(to_onnx_bytes(estimator, 5))
        got = load_base_model(path).predict([xr.astype("float32")], batch_size=16)
        np.testing.assert_allclose(
            got[:, 0], estimator.predict(xr.astype("float32")), rtol=1e-4, atol=1e-3
        )


def test_train_onnx_fold_models_refuses_a_fold_missing_a_class(tmp_path):
    from stacking import train_onnx_fold_models
    from stacking.folds import FoldPlan

    ids = np.array([f"r{i}" for i in range(12)])
    plan = FoldPlan(ids=ids, folds=np.array([0] * 6 + [1] * 6))
    y = np.array([0] * 6 + [1, 2] * 3)  # fold 1's models train on fold 0: class 0 only
    x = np.random.default_rng(0).normal(size=(12, 3))
    with pytest.raises(ConfigError, match=r"learned classes \[1, 2\] but the target has 3"):
        train_onnx_fold_models(
            _lr, x, y, plan, tmp_path / "m", task="multiclass", classes=["a", "b", "c"]
        )


def test_onnx_without_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(BaseModelError, match=r"pip install 'tf-stacking\[onnx\]'"):
        load_base_model(path)


def test_damaged_onnx_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"not a protobuf")
    with pytest.raises(BaseModelError, match=r"cannot load ONNX model .*m\.onnx") as info:
        load_base_model(path)
    assert "\n" not in str(info.value)


def test_onnx_string_input_takes_text_as_bytes_or_str(tmp_path):
    """A text view hands the model bytes; ONNX Runtime takes str: both give the same."""
    from onnx import TensorProto, helper, save

    encode = helper.make_node(
        "LabelEncoder",
        ["word"],
        ["score"],
        domain="ai.onnx.ml",
        keys_strings=["sun", "rain"],
        values_floats=[0.9, 0.1],
        default_float=0.5,
    )
    graph = helper.make_graph(
        [encode],
        "words",
        [helper.make_tensor_value_info("word", TensorProto.STRING, ["N", 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    onnx_model = helper.make_model(graph, opset_imports=opsets)
    onnx_model.ir_version = 9
    save(onnx_model, str(tmp_path / "words.onnx"))
    model = load_base_model(tmp_path / "words.onnx")
    assert model.input_dtypes == ["string"] and model.input_shapes == [(1,)]
    as_bytes = np.array([[b"sun"], [b"rain"], [b"fog"]], dtype=object)
    np.testing.assert_allclose(model.predict([as_bytes], batch_size=2)[:, 0], [0.9, 0.1, 0.5])
    np.testing.assert_array_equal(
        model.predict([as_bytes.astype(str)], batch_size=2), model.predict([as_bytes], batch_size=3)
    )


def test_onnx_predictions_are_cached_by_file_content(onnx_run, multiclass_project, tmp_path):
    """A rerun reads every ONNX part from the cache; a replaced fold file is recomputed."""
    import shutil

    from stacking.base import ResolvedBaseModel
    from stacking.cache import LocalCacheStore
    from stacking.engine import TrainRows, predict_base_models
    from stacking.executors import LocalExecutor

    _, tmp, _, plan = onnx_run
    folder = shutil.copytree(tmp / "lgbm", tmp_path / "lgbm")
    train = pd.read_csv(multiclass_project.root / "train.csv")
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    paths = [folder / f"fold_{k}.onnx" for k in range(plan.n_splits)]
    spec = BaseModelSpec(path=folder, input="x")
    recipe = ResolvedBaseModel(
        name="lgbm", spec=spec, kind="folds", fold_paths=paths, row_paths=paths
    )
    y = pd.Categorical(train["y"], categories=CLASSES).codes

    def run():
        return predict_base_models(
            [recipe],
            task="multiclass",
            n_outputs=3,
            executor=LocalExecutor(progress=False),
            cache=LocalCacheStore(tmp_path / "cache"),
            train=TrainRows({"lgbm": [train[FEATURES].to_numpy()]}, plan, y),
            rows={"lgbm": [test[FEATURES].to_numpy()]},
        )["lgbm"]

    first = run()
    assert (first.computed, first.cached) == (2 * plan.n_splits, 0)
    again = run()
    assert (again.computed, again.cached) == (0, 2 * plan.n_splits)
    np.testing.assert_array_equal(again.oof, first.oof)
    np.testing.assert_array_equal(again.test, first.test)
    shutil.copy(tmp / "lr" / "fold_1.onnx", folder / "fold_1.onnx")  # another model
    changed = run()
    assert (changed.computed, changed.cached) == (2, 2 * plan.n_splits - 2)
    assert not np.array_equal(changed.oof[plan.test_index(1)], first.oof[plan.test_index(1)])


def test_train_onnx_fold_models_full_model_and_manifest(tmp_path):
    from stacking import train_onnx_fold_models
    from stacking.base import read_manifest
    from stacking.folds import FoldPlan

    rng = np.random.default_rng(1)
    plan = FoldPlan(ids=np.array([f"r{i}" for i in range(40)]), folds=np.arange(40) % 2)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 3
    folder = train_onnx_fold_models(
        _lr, x, y, plan, tmp_path / "m", task="multiclass", classes=CLASSES, train_full=True
    )
    manifest = read_manifest(folder)
    assert manifest["format"] == "onnx" and manifest["has_full"] is True
    assert manifest["estimator"] == "sklearn.Pipeline"
    assert sorted(manifest["files"]) == ["fold_0.onnx", "fold_1.onnx", "full.onnx"]
    source = resolve_base_model(
        "m",
        BaseModelSpec(path=folder, input="x", test_with="full"),
        folds_digest=plan.digest,
        n_splits=2,
        task="multiclass",
        classes=CLASSES,
    )
    assert source.row_paths == [folder / "full.onnx"]
    full = _lr().fit(x.astype("float32"), y)  # the same estimator on every row
    got = load_base_model(source.row_paths[0]).predict([x], batch_size=16)
    np.testing.assert_allclose(got, full.predict_proba(x.astype("float32")), atol=1e-5)
    with pytest.raises(ConfigError, match=r"is not empty; pass overwrite=True"):
        train_onnx_fold_models(_lr, x, y, plan, folder, task="multiclass", classes=CLASSES)


def test_train_onnx_fold_models_leaves_no_half_fold_set_when_a_later_fold_fails(tmp_path):
    """Fold 0 is written before fold 1 fails; the retry must not meet that fold 0 (the
    directory is not empty) nor take it for a finished set."""
    from stacking import train_onnx_fold_models
    from stacking.folds import FoldPlan

    ids = np.array([f"r{i}" for i in range(12)])
    plan = FoldPlan(ids=ids, folds=np.repeat([0, 1, 2], 4))
    y = np.array([0, 1, 0, 1] + [2] * 4 + [0, 1, 0, 1])  # fold 1's models never see class 2
    x = np.random.default_rng(0).normal(size=(12, 3))
    args = dict(task="multiclass", classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"the fold_1 estimator learned classes \[0, 1\]"):
        train_onnx_fold_models(_lr, x, y, plan, tmp_path / "m", **args)
    assert not (tmp_path / "m").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays, empty
    with pytest.raises(ConfigError):
        train_onnx_fold_models(_lr, x, y, plan, tmp_path / "kept", **args)
    assert list((tmp_path / "kept").iterdir()) == []
    y = np.array([0, 1, 2, 0] * 3)
    train_onnx_fold_models(_lr, x, y, plan, tmp_path / "kept", **args)  # no overwrite needed
    assert sorted(p.name for p in (tmp_path / "kept").glob("*.onnx")) == [
        "fold_0.onnx",
        "fold_1.onnx",
        "fold_2.onnx",
    ]


def test_onnx_model_failing_on_a_batch_names_its_file_not_the_folder_it_is_served_from(tmp_path):
    """The message reaches an HTTP client of a served model (as a refused request), so it
    names the file, not the server's folders."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],  # only a batch of 2 fits
        "fixed_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "served" / "fold_0.onnx"
    path.parent.mkdir()
    path.write_bytes(model.SerializeToString())
    frozen = load_base_model(path)
    x = np.zeros((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(frozen.predict([x], batch_size=2), x)
    with pytest.raises(BaseModelError, match=r"ONNX model 'fold_0\.onnx' failed on a batch of 5"):
        frozen.predict([np.zeros((5, 3), dtype=np.float32)], batch_size=5)
