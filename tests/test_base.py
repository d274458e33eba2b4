"""Loading frozen models of each format, and resolving base-model directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stacking import BaseModelError, LeakageError, load_base_model
from stacking.base import read_manifest, resolve_base_model, write_manifest
from stacking.config import BaseModelSpec
from stacking.errors import DataError, DataFileNotFoundError


@pytest.fixture(scope="module")
def keras_model():
    from tests.conftest import build_model

    model = build_model("multiclass", 3, hidden=4)
    return model


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(50, 6)).astype("float32")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_base_model_matches_keras_and_is_frozen(keras_model, x, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    keras_model.save(path)
    frozen = load_base_model(path)
    assert frozen.input_shapes == [(6,)]
    assert frozen._model.trainable is False
    got = frozen.predict([x], batch_size=16)  # several batches, last one partial
    np.testing.assert_allclose(got, keras_model(x, training=False).numpy(), atol=1e-6)


def test_load_base_model_reads_savedmodel_folder(keras_model, x, tmp_path):
    keras_model.export(tmp_path / "sm", verbose=False)
    frozen = load_base_model(tmp_path / "sm")
    assert len(frozen.output_names) == 1
    got = frozen.predict([x], batch_size=20)
    np.testing.assert_allclose(got, keras_model(x, training=False).numpy(), atol=1e-5)


def _to_tflite(model, path):
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def test_load_base_model_reads_tflite(keras_model, x, tmp_path):
    frozen = load_base_model(_to_tflite(keras_model, tmp_path / "m.tflite"))
    assert frozen.input_shapes == [(6,)]
    got = frozen.predict([x], batch_size=16)  # resized per batch, last one partial
    np.testing.assert_allclose(got, keras_model(x, training=False).numpy(), atol=1e-5)


def test_tflite_fold_models_stack_like_their_keras_originals(multiclass_project, tmp_path):
    """A fold-model directory of .tflite files (converted from the Keras folds) gives
    the same OOF features as the Keras directory."""
    import keras

    from stacking import Experiment
    from stacking.folds import FoldPlan

    source = multiclass_project.root / "models/wide"
    lite = tmp_path / "wide_lite"
    lite.mkdir()
    for k in range(3):
        _to_tflite(keras.models.load_model(source / f"fold_{k}.keras"), lite / f"fold_{k}.tflite")
    # Converted models are new files: their manifest records their own hashes.
    manifest = read_manifest(source)
    write_manifest(
        lite,
        fold_plan=FoldPlan.from_csv(source / "folds.csv"),
        task=manifest["task"],
        classes=manifest["classes"],
        format="tflite",
    )
    assert sorted(read_manifest(lite)["files"]) == [f"fold_{k}.tflite" for k in range(3)]
    runs = {}
    for name, path in {"keras": source, "lite": lite}.items():
        cfg = multiclass_project.config(
            tmp_path / name, **{"base_models.wide.path": str(path), "tracking.enabled": False}
        )
        runs[name] = Experiment.from_yaml(
            cfg, output_dir=tmp_path / name / "out", progress=False
        ).run()
    cols = ["wide__ant", "wide__bee", "wide__cat"]
    np.testing.assert_allclose(runs["lite"].oof[cols], runs["keras"].oof[cols], atol=1e-5)


def test_load_base_model_multi_output_needs_output(tmp_path, x):
    import keras

    inputs = keras.Input((6,))
    model = keras.Model(
        inputs,
        [
            keras.layers.Dense(2, name="head_a")(inputs),
            keras.layers.Dense(3, name="head_b")(inputs),
        ],
    )
    model.save(tmp_path / "two.keras")
    with pytest.raises(BaseModelError, match=r"several outputs.*Received: output=None"):
        load_base_model(tmp_path / "two.keras")
    picked = load_base_model(tmp_path / "two.keras", output=1)
    assert picked.output_names == ["head_a", "head_b"]
    assert picked.predict([x], batch_size=64).shape == (50, 3)
    by_name = load_base_model(tmp_path / "two.keras", output="head_b")
    np.testing.assert_array_equal(
        by_name.predict([x], batch_size=64), picked.predict([x], batch_size=64)
    )
    with pytest.raises(BaseModelError, match=r"no such output.*did you mean 'head_b'\?$"):
        load_base_model(tmp_path / "two.keras", output="head-b")


@pytest.mark.parametrize(
    ("name", "match", "error"),
    [
        ("missing.keras", "does not exist", DataFileNotFoundError),
        ("notes.txt", "not a model format", BaseModelError),
        ("broken.keras", "cannot load Keras model", BaseModelError),
    ],
)
def test_load_base_model_errors(tmp_path, name, match, error):
    if name != "missing.keras":
        (tmp_path / name).write_text("not a model")
    with pytest.raises(error, match=match):
        load_base_model(tmp_path / name)


def _resolve(project, **changes):
    cfg = BaseModelSpec(**{"path": project.root / "models/wide", "input": "x", **changes})
    manifest = read_manifest(project.root / "models/wide")
    return resolve_base_model(
        "wide",
        cfg,
        folds_digest=manifest["folds_digest"],
        n_splits=3,
        task="multiclass",
        classes=["ant", "bee", "cat"],
    )


def test_resolve_base_model_finds_every_fold(multiclass_project):
    source = _resolve(multiclass_project)
    assert source.kind == "folds"
    assert [p.name for p in source.fold_paths] == [f"fold_{k}.keras" for k in range(3)]


def test_resolve_base_model_refuses_missing_fold_and_manifest(multiclass_project, tmp_path):
    import shutil

    copy = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models/wide", copy)
    (copy / "fold_2.keras").unlink()
    with pytest.raises(BaseModelError, match="no fold_2 model"):
        _resolve(multiclass_project, path=copy)
    (copy / "stacking.json").unlink()
    with pytest.raises(LeakageError, match=r"no stacking\.json"):
        _resolve(multiclass_project, path=copy)


def test_resolve_base_model_refuses_full_model_declared_external(multiclass_project, tmp_path):
    """A model beside this plan's fold models trained on these rows: not external."""
    import shutil

    copy = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models/wide", copy)
    shutil.copy(copy / "fold_0.keras", copy / "full.keras")
    with pytest.raises(LeakageError, match=r"sits beside fold models .* neither external"):
        _resolve(multiclass_project, path=copy / "full.keras", trained_on="external")


def test_resolve_base_model_refuses_other_classes(multiclass_project, tmp_path):
    import shutil

    copy = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models/wide", copy)
    manifest = json.loads((copy / "stacking.json").read_text())
    manifest["classes"] = ["bee", "ant", "cat"]
    (copy / "stacking.json").write_text(json.dumps(manifest))
    with pytest.raises(BaseModelError, match=r"predicts classes .* misread"):
        _resolve(multiclass_project, path=copy)


def test_tflite_multi_output_is_picked_by_signature_name(tmp_path, x):
    """Output tensors of a converted model are not in Keras order; the signature names
    (output_0, output_1) are, and pick the right one."""
    import keras

    inputs = keras.Input((6,))
    model = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(5)(inputs)])
    path = _to_tflite(model, tmp_path / "two.tflite")
    with pytest.raises(BaseModelError, match=r"several outputs.*output_0"):
        load_base_model(path)
    expected = model(x, training=False)
    for index, name in enumerate(["output_0", "output_1"]):
        got = load_base_model(path, output=name).predict([x], batch_size=16)
        np.testing.assert_allclose(got, expected[index].numpy(), atol=1e-5)


def test_predictor_format_version_is_checked(tmp_path):
    from stacking.predictor import EnsemblePredictor

    (tmp_path / "predictor.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(DataError, match=r"saved in format 1 \(predictor.json\) by an older"):
        EnsemblePredictor.load(tmp_path)


def test_fold_models_exist_only_while_files_match_the_manifest(multiclass_project, tmp_path):
    import shutil

    from stacking.folds import FoldPlan
    from stacking.training import fold_models_exist

    copy = tmp_path / "wide"
    shutil.copytree(multiclass_project.root / "models/wide", copy)
    plan = FoldPlan.from_csv(copy / "folds.csv")
    assert fold_models_exist(copy, plan)
    shutil.copy(copy / "fold_0.keras", copy / "fold_1.keras")
    assert not fold_models_exist(copy, plan)


def test_sequential_fold_models_run_end_to_end(multiclass_project, tmp_path):
    """`keras.Sequential` fold models (the common way to build one) stack like any other;
    they crashed with "'Sequential' object has no attribute 'output_names'"."""
    import keras

    from stacking import Experiment, load_config, load_dataset, make_fold_plan, train_fold_models

    cfg = load_config(multiclass_project.config(tmp_path / "cfg"))
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)

    def build():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    x = data.train[[f"f_{i}" for i in range(6)]].to_numpy("float32")
    seq = train_fold_models(
        build,
        x,
        data.y,
        plan,
        tmp_path / "seq",
        task="multiclass",
        classes=data.classes,
        fit_kwargs={"epochs": 1},
    )
    assert sorted(read_manifest(seq)["files"]) == [f"fold_{k}.keras" for k in range(3)]
    path = multiclass_project.config(
        tmp_path,
        **{"base_models.seq": {"path": str(seq), "input": "x"}, "tracking.enabled": False},
    )
    result = Experiment.from_yaml(path, output_dir=tmp_path / "out", progress=False).run()
    oof = result.oof[["seq__ant", "seq__bee", "seq__cat"]].to_numpy()
    rows = plan.test_index(0)
    direct = keras.models.load_model(seq / "fold_0.keras")(x[rows]).numpy()
    np.testing.assert_allclose(oof[rows], direct, atol=1e-5)
