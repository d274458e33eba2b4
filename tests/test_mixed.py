"""One config mixing every model kind and input: a Sequential .h5 fold set, a SavedModel
with two named inputs, a .tflite model, an image-file model and a text model (issue 6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import serve_and_predict, sqlite_store

pytestmark = pytest.mark.e2e

N_TRAIN, N_TEST, N_SPLITS = 90, 30, 3
WORDS = [["sun", "warm", "beach"], ["rain", "cold", "storm"], ["leaf", "tree", "moss"]]
ALL_WORDS = [w for words in WORDS for w in words]


def _table(n: int, rng, folder):
    from PIL import Image

    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)) + y[:, None] * 0.8
    rows = []
    for i in range(n):
        pixels = np.full((6, 6, 3), 40 + 80 * y[i], dtype=np.uint8)
        pixels += rng.integers(0, 30, size=pixels.shape, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{folder.name}_{i}.png")
        words = rng.choice(WORDS[y[i]], size=3).tolist() + rng.choice(ALL_WORDS, 1).tolist()
        rows.append(
            {
                "id": f"{folder.name}{i}",
                **{f"f_{j}": x[i, j] for j in range(4)},
                "path": f"images/img_{folder.name}_{i}.png",
                "text": " ".join(words),
                "y": ["a", "b", "c"][y[i]],
            }
        )
    return pd.DataFrame(rows)


def _text_model():
    import keras

    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(np.array([" ".join(w) for w in WORDS]))
    inputs = keras.Input((1,), dtype="string", name="sentence")
    x = keras.layers.Embedding(20, 4)(vectorize(inputs))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _two_input_savedmodel(path):
    """A SavedModel whose inputs `zeta`, `alpha` sort differently from their order."""
    import tensorflow as tf

    w = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype("float32"))

    class TwoInputs(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec((None, 2), tf.float32, name="zeta"),
                tf.TensorSpec((None, 2), tf.float32, name="alpha"),
            ]
        )
        def __call__(self, zeta, alpha):
            logits = tf.matmul(tf.concat([zeta, 2.0 * alpha], axis=1), w)
            return {"proba": tf.nn.softmax(logits)}

    module = TwoInputs()
    module.w = w
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    import keras

    from stacking import load_config, load_dataset, make_fold_plan, train_fold_models
    from stacking.base import write_manifest

    root = tmp_path_factory.mktemp("mixed")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    train = _table(N_TRAIN, rng, root / "images")
    test = _table(N_TEST, rng, root / "images")
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns="y").to_csv(root / "test.csv", index=False)
    # Per-row (2, 3) arrays, row-aligned with each table: e.g. precomputed embeddings.
    np.save(root / "train_emb.npy", rng.normal(size=(N_TRAIN, 2, 3)).astype("float32"))
    np.savez(root / "test_emb.npz", emb=rng.normal(size=(N_TEST, 2, 3)).astype("float32"))
    raw = {
        "name": "mixed",
        "data": {
            "train": "train.csv",
            "test": "test.csv",
            "id": "id",
            "target": "y",
            "views": {
                "x": {"columns": "f_*"},
                "front": {"columns": ["f_0", "f_1"]},
                "back": {"columns": ["f_2", "f_3"]},
                "img": {"image": "path", "size": [6, 6], "channels": 3},
                "words": {"text": "text"},
                "emb": {
                    "array": {"train": "train_emb.npy", "test": "test_emb.npz:emb", "column": "emb"}
                },
            },
        },
        "folds": {"kind": "stratified", "n_splits": N_SPLITS},
        "base_models": {
            "seq": {"path": "models/seq", "input": "x"},
            "two": {
                "path": "models/two",
                "input": {"zeta": "front", "alpha": "back"},
                "trained_on": "external",
            },
            "lite": {"path": "models/lite.tflite", "input": "x", "trained_on": "external"},
            "cnn": {"path": "models/cnn.keras", "input": "img", "trained_on": "external"},
            "txt": {"path": "models/txt.keras", "input": "words", "trained_on": "external"},
            "arr": {"path": "models/arr.keras", "input": "emb", "trained_on": "external"},
        },
        "meta": {"candidates": ["logistic", "mean"], "bootstrap": 0},
        "tracking": {"enabled": False},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(root / "config.yaml")
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)

    def sequential():
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
        )
        model.add(keras.layers.Softmax())
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    x = data.train[[f"f_{j}" for j in range(4)]].to_numpy("float32")
    seq = train_fold_models(
        sequential,
        x,
        data.y,
        plan,
        root / "models/seq",
        task=data.task,
        classes=data.classes,
        fit_kwargs={"epochs": 3},
    )
    for k in range(N_SPLITS):  # the fold set in the legacy HDF5 format
        keras.models.load_model(seq / f"fold_{k}.keras").save(seq / f"fold_{k}.h5")
        (seq / f"fold_{k}.keras").unlink()
    write_manifest(seq, fold_plan=plan, task=data.task, classes=data.classes, format="h5")

    _two_input_savedmodel(root / "models/two")
    lite = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    lite.export(str(root / "models/lite.tflite"), format="litert")
    cnn = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    cnn.save(root / "models/cnn.keras")
    _text_model().save(root / "models/txt.keras")
    arr = keras.Sequential(
        [keras.Input((2, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")]
    )
    arr.save(root / "models/arr.keras")
    return root


def test_one_config_mixes_every_model_kind_and_input(mixed, tmp_path):
    import keras
    import tensorflow as tf

    from stacking import Experiment
    from stacking.predictor import load_predictor

    result = Experiment.from_yaml(
        mixed / "config.yaml", output_dir=tmp_path / "out", progress=False
    ).run()
    assert {"seq", "two", "lite", "cnn", "txt", "arr"} <= set(result.leaderboard.model)

    train = pd.read_csv(mixed / "train.csv")
    # The SavedModel got its inputs by name (zeta = f_0, f_1; alpha = f_2, f_3).
    loaded = tf.saved_model.load(str(mixed / "models/two"))
    direct = loaded.signatures["serving_default"](
        zeta=tf.constant(train[["f_0", "f_1"]].to_numpy("float32")),
        alpha=tf.constant(train[["f_2", "f_3"]].to_numpy("float32")),
    )["proba"].numpy()
    oof = result.oof
    np.testing.assert_allclose(oof[["two__a", "two__b", "two__c"]], direct, atol=1e-5)
    # The image model saw the files as load_img gives them.
    pixels = np.stack(
        [
            keras.utils.img_to_array(keras.utils.load_img(mixed / p, target_size=(6, 6)))
            for p in train["path"]
        ]
    )
    cnn = keras.models.load_model(mixed / "models/cnn.keras")
    np.testing.assert_allclose(oof[["cnn__a", "cnn__b", "cnn__c"]], cnn(pixels).numpy(), atol=1e-5)
    # The text model read the strings.
    txt = keras.models.load_model(mixed / "models/txt.keras")
    np.testing.assert_allclose(
        oof[["txt__a", "txt__b", "txt__c"]],
        txt(tf.constant(train[["text"]].to_numpy().astype(str))).numpy(),
        atol=1e-5,
    )
    # The array model read the memory-mapped .npy rows.
    arr = keras.models.load_model(mixed / "models/arr.keras")
    np.testing.assert_allclose(
        oof[["arr__a", "arr__b", "arr__c"]],
        arr(np.load(mixed / "train_emb.npy")).numpy(),
        atol=1e-5,
    )
    # Served from the results folder on unlabeled rows, from another working folder; new
    # rows carry each row's array in the view's column.
    test = pd.read_csv(mixed / "test.csv")
    test["emb"] = list(np.load(mixed / "test_emb.npz")["emb"])
    served = load_predictor(tmp_path / "out").predict(test, root=mixed)
    ensemble = [c for c in served.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-12
    )


@pytest.mark.slow
def test_mlflow_models_serve_answers_unlabeled_rows_of_every_view(mixed, tmp_path):
    """`mlflow models serve` of the logged ensemble: image paths, text and columns over
    HTTP, without the label, equal the run's own test predictions."""
    import mlflow

    from stacking import Experiment

    raw = yaml.safe_load((mixed / "config.yaml").read_text())
    raw["base_models"].pop("arr")  # array rows travel as files, not as JSON cells
    uri = sqlite_store(tmp_path)
    raw["tracking"] = {"uri": uri, "experiment": "serve"}
    for key in ("train", "test"):
        raw["data"][key] = str(mixed / raw["data"][key])
    for spec in raw["base_models"].values():
        spec["path"] = str(mixed / spec["path"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = Experiment.from_yaml(
        tmp_path / "c.yaml", output_dir=tmp_path / "out", progress=False
    ).run()
    model_id = (
        mlflow.MlflowClient(uri).get_run(result.run_id).data.tags["stacking.ensemble_model_id"]
    )
    # No label column; relative image paths resolve against the server's folder.
    served = serve_and_predict(uri, model_id, pd.read_csv(mixed / "test.csv"), cwd=mixed)
    ensemble = [c for c in result.test_predictions.columns if c.startswith("ensemble__")]
    np.testing.assert_allclose(
        served[ensemble].to_numpy(), result.test_predictions[ensemble].to_numpy(), atol=1e-9
    )
