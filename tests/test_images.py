"""Image views end to end: PNG files on disk, read in batches, stacked with a column view.

One session fixture writes 150 digits as 16x16 RGB PNG files (120 training rows, 30 test
rows) with ``experiments/images/make_images.py`` and trains two fold-model sets once: a
small CNN on the image files and a dense model on the 64 pixel columns of the same table.
Tests that change files work on their own copy of the data folder.
"""

from __future__ import annotations

import base64
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ModelServer, logged_ensemble, sqlite_store

from stacking import DataError, Experiment, load_config, load_dataset, make_fold_plan
from stacking.executors import LocalExecutor
from stacking.predictor import load_predictor

SIZE = 16
N_SPLITS = 3
CLASSES = [str(c) for c in range(10)]
MAKE_IMAGES = Path(__file__).resolve().parents[1] / "experiments" / "images" / "make_images.py"


def _make_images_module():
    spec = importlib.util.spec_from_file_location("make_images", MAKE_IMAGES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cnn():
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return model


def build_dense():
    import keras
    from keras import layers

    inputs = keras.Input((64,))
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def build_encoder():
    """A frozen random encoder (never trained: used as a backbone with a cross-fitted head)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.GlobalAveragePooling2D(name="embedding")(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


@dataclass
class ImageProject:
    data: Path  # train.csv, test.csv, test_labeled.csv, png/
    models: Path  # cnn/, pixels/

    def config(self, tmp_path: Path, data: Path | None = None, *, tracking: bool = False) -> Path:
        """A config over ``data`` (default: the shared folder), results under tmp_path."""
        data = data or self.data
        raw = {
            "name": "images",
            "data": {
                "train": str(data / "train.csv"),
                "test": str(data / "test.csv"),
                "id": "id",
                "target": "label",
                "task": "multiclass",
                "views": {
                    "image": {"image": "path", "size": [SIZE, SIZE], "channels": 3},
                    "pixels": {"columns": "px_*"},
                },
            },
            "folds": {"kind": "stratified", "n_splits": N_SPLITS, "seed": 0},
            "base_models": {
                "cnn": {"path": str(self.models / "cnn"), "input": "image"},
                "pixels": {"path": str(self.models / "pixels"), "input": "pixels"},
                "encoder": {
                    "path": str(self.models / "encoder" / "encoder.keras"),
                    "input": "image",
                    "layer": "embedding",
                    "head": "logistic",
                },
            },
            "meta": {"candidates": ["logistic", "mean"], "bootstrap": 0},
            "tracking": {
                "enabled": tracking,
                "uri": sqlite_store(tmp_path),
                "experiment": "images",
            },
            "cache": {"dir": str(tmp_path / "cache")},
        }
        path = tmp_path / "images.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    def copy_data(self, tmp_path: Path) -> Path:
        return Path(shutil.copytree(self.data, tmp_path / "data"))


@pytest.fixture(scope="session")
def image_project(tmp_path_factory) -> ImageProject:
    from stacking import train_fold_models
    from stacking.views import read_view

    root = tmp_path_factory.mktemp("images")
    _make_images_module().write_digit_images(root / "data", size=SIZE, n_rows=150, seed=0)
    project = ImageProject(data=root / "data", models=root / "models")
    raw = yaml.safe_load(project.config(root).read_text())
    del raw["base_models"]["encoder"]  # not written yet
    (root / "images.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(root / "images.yaml")
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    images = read_view(
        data.train, cfg.data.views["image"], which="train", root=project.data, ids=data.ids
    ).to_numpy()
    pixels = data.train[[f"px_{i}" for i in range(64)]].to_numpy("float32")
    for name, build, x in [("cnn", build_cnn, images), ("pixels", build_dense, pixels)]:
        train_fold_models(
            build,
            x,
            data.y,
            plan,
            project.models / name,
            task=data.task,
            classes=data.classes,
            fit_kwargs={"epochs": 3, "batch_size": 32},
        )
    (project.models / "encoder").mkdir()
    build_encoder().save(project.models / "encoder" / "encoder.keras")
    return project


@pytest.fixture(scope="module")
def image_run(image_project, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image-run")
    cfg = image_project.config(tmp, tracking=True)
    result = Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    return result, tmp


class RecordingExecutor(LocalExecutor):
    """The local executor, remembering how many predictions each model computed."""

    def __init__(self) -> None:
        super().__init__(progress=False)
        self.computed: dict[str, int] = {}

    def run(self, jobs, on_result):
        for job in jobs:
            self.computed[job.model] = self.computed.get(job.model, 0) + len(job.keys)
        super().run(jobs, on_result)


def _run(config: Path, out: Path) -> tuple[object, dict[str, int]]:
    executor = RecordingExecutor()
    result = Experiment.from_yaml(config, output_dir=out, executor=executor, progress=False).run()
    return result, executor.computed


def _load_pixels(folder: Path, paths) -> np.ndarray:
    import keras

    return np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(folder / p, color_mode="rgb", target_size=(SIZE, SIZE))
            )
            for p in paths
        ]
    )


@pytest.mark.e2e
def test_image_experiment_runs_end_to_end(image_run):
    result, tmp = image_run
    oof = pd.read_parquet(tmp / "out" / "oof.parquet")
    assert len(oof) == 120
    assert [c for c in oof.columns if c.startswith("cnn__")] == [f"cnn__{c}" for c in CLASSES]
    assert set(result.leaderboard["model"]) >= {"cnn", "pixels", "encoder", "logistic", "mean"}
    assert result.test_predictions is not None and len(result.test_predictions) == 30
    # The CNN learned something from the image files: far better than chance (0.1).
    accuracy = (oof[[f"cnn__{c}" for c in CLASSES]].to_numpy().argmax(axis=1) == oof.label).mean()
    assert accuracy > 0.3


@pytest.mark.e2e
def test_image_oof_equals_a_direct_keras_call_on_load_img_arrays(image_run, image_project):
    import keras

    result, _ = image_run
    train = pd.read_csv(image_project.data / "train.csv")
    oof = result.oof.set_index("id").loc[train["id"]]
    for k in range(N_SPLITS):
        rows = (oof["fold"] == k).to_numpy()
        model = keras.models.load_model(image_project.models / "cnn" / f"fold_{k}.keras")
        direct = model.predict(_load_pixels(image_project.data, train["path"][rows]), verbose=0)
        got = oof.loc[rows, [f"cnn__{c}" for c in CLASSES]].to_numpy()
        np.testing.assert_allclose(got, direct, atol=1e-5)


@pytest.mark.e2e
def test_image_predictor_serves_unlabeled_rows_like_test_predictions(image_run, image_project):
    result, tmp = image_run
    test = pd.read_csv(image_project.data / "test.csv")
    assert "label" not in test.columns
    got = load_predictor(tmp / "out").predict(test, root=image_project.data)
    columns = [f"ensemble__{c}" for c in CLASSES]
    np.testing.assert_allclose(
        got[columns].to_numpy(), result.test_predictions[columns].to_numpy(), atol=1e-10
    )
    assert got["id"].tolist() == test["id"].tolist()
    assert got["prediction"].tolist() == result.test_predictions["prediction"].tolist()


@pytest.mark.e2e
def test_unreadable_image_is_a_data_error_naming_file_and_row_id(image_project, tmp_path):
    data = image_project.copy_data(tmp_path)
    train = pd.read_csv(data / "train.csv")
    bad_id, bad_path = train["id"].tolist()[7], train["path"][7]
    (data / bad_path).write_bytes(b"this is not a PNG file")
    with pytest.raises(DataError) as info:
        Experiment.from_yaml(image_project.config(tmp_path, data), progress=False).run()
    message = str(info.value)
    assert str(data / bad_path) in message
    assert f"row id {bad_id!r}): not an image file PIL can read" in message
    assert "\n" not in message


@pytest.mark.e2e
def test_image_cache_follows_file_content_not_paths(image_project, tmp_path):
    data = image_project.copy_data(tmp_path)
    config = image_project.config(tmp_path, data)
    first, computed = _run(config, tmp_path / "run1")
    # Fold models: OOF and test per fold; the backbone: all training rows, and the test rows.
    assert computed == {"cnn": 2 * N_SPLITS, "pixels": 2 * N_SPLITS, "encoder": 2}

    # Edit one training image: only the CNN's part for that row's fold is predicted again,
    # and the backbone's embeddings of the training rows; not the test rows, not the pixels.
    train = pd.read_csv(data / "train.csv")
    edited = _load_pixels(data, train["path"][:1])[0].astype(np.uint8)
    edited[:, : SIZE // 2] = 255 - edited[:, : SIZE // 2]
    from PIL import Image

    Image.fromarray(edited).save(data / train["path"][0])
    second, computed = _run(config, tmp_path / "run2")
    assert computed == {"cnn": 1, "encoder": 1}
    fold = first.oof.set_index("id").loc[train["id"][0], "fold"]
    changed = ~np.isclose(first.oof.filter(like="cnn__"), second.oof.filter(like="cnn__")).all(
        axis=1
    )
    assert changed.any() and set(second.oof.loc[changed, "fold"]) == {fold}

    # Rename the image folder (the tables' paths follow): nothing is predicted again.
    (data / "png").rename(data / "pictures")
    for table in ["train.csv", "test.csv"]:
        frame = pd.read_csv(data / table)
        frame["path"] = frame["path"].str.replace("png/", "pictures/", regex=False)
        frame.to_csv(data / table, index=False)
    third, computed = _run(config, tmp_path / "run3")
    assert computed == {}
    pd.testing.assert_frame_equal(third.oof, second.oof)


def _data_uris(folder: Path, paths) -> list[str]:
    """Each image file as the cell a client sends: ``data:image/png;base64,…``."""
    return [
        "data:image/png;base64," + base64.b64encode((folder / p).read_bytes()).decode()
        for p in paths
    ]


def _ensemble(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"ensemble__{c}" for c in CLASSES]].to_numpy()


@pytest.mark.e2e
def test_image_pyfunc_model_takes_images_in_rows_and_paths_only_under_its_root(
    image_run, image_project
):
    from stacking.errors import DataError

    result, tmp = image_run
    uri = load_config(tmp / "images.yaml").tracking.uri
    test = pd.read_csv(image_project.data / "test.csv")
    model, model_id = logged_ensemble(uri, result.run_id)
    shape = model.metadata.metadata["stacking.image_columns"]
    assert list(shape) == ["path"] and shape["path"].startswith("an image as 'data:image/png")
    sent = test.assign(path=_data_uris(image_project.data, test["path"]))
    np.testing.assert_allclose(
        _ensemble(model.predict(sent)), _ensemble(result.test_predictions), atol=1e-10
    )
    with pytest.raises(DataError, match=r"row 0 .*: this model reads no files on the server"):
        model.predict(test)  # the default logged model reads no path

    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        rooted = mlflow.pyfunc.load_model(
            f"models:/{model_id}",
            model_config={"image_root": str(image_project.data), "max_rows": 29},
        )
    finally:
        mlflow.set_tracking_uri(None)
    np.testing.assert_allclose(
        _ensemble(rooted.predict(test.head(29))),
        _ensemble(result.test_predictions.head(29)),
        atol=1e-10,
    )
    with pytest.raises(DataError, match="the request has 30 rows; this model answers at most 29"):
        rooted.predict(test)
    outside = test.head(1).assign(path=str(image_project.data / test["path"][0]))
    with pytest.raises(DataError, match="absolute paths are refused"):
        rooted.predict(outside)


@pytest.mark.e2e
def test_cli_predict_keeps_image_paths_inside_the_table_folder(
    image_run, image_project, tmp_path, capsys
):
    import os

    from stacking.cli import main

    result, tmp = image_run
    test = pd.read_csv(image_project.data / "test.csv")
    # A table outside the data folder whose paths climb out of its own folder to reach it.
    climbing = test.assign(
        path=[os.path.relpath(image_project.data / p, tmp_path) for p in test["path"]]
    )
    climbing.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "p.csv"
    code = main(["predict", str(tmp / "out"), str(tmp_path / "new.csv"), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"row id {test['id'].tolist()[0]!r}, column 'path'" in err
    assert "paths with '..' are refused" in err and "--image-root" in err
    assert not out.exists()
    # The same rows with paths relative to the data folder, named with --image-root.
    test.to_csv(tmp_path / "new.csv", index=False)
    args = ["--output", str(out), "--image-root", str(image_project.data)]
    assert main(["predict", str(tmp / "out"), str(tmp_path / "new.csv"), *args]) == 0
    got = pd.read_csv(out)
    np.testing.assert_allclose(_ensemble(got), _ensemble(result.test_predictions), atol=1e-10)


@pytest.fixture(scope="module")
def served(image_run, image_project, tmp_path_factory):
    """Two ``mlflow models serve`` of the run's logged model, started together: the
    default one (in the data folder, whose relative paths it must not read) and one an
    operator gave an image folder (STACKING_IMAGE_ROOT), with a symlink out of it."""
    import os

    import mlflow

    result, tmp = image_run
    uri = load_config(tmp / "images.yaml").tracking.uri
    model_id = (
        mlflow.MlflowClient(uri).get_run(result.run_id).data.tags["stacking.ensemble_model_id"]
    )
    base = tmp_path_factory.mktemp("served")
    root = Path(shutil.copytree(image_project.data, base / "images"))
    secret = base / "secret.png"
    shutil.copy(image_project.data / pd.read_csv(root / "test.csv")["path"][0], secret)
    os.symlink(secret, root / "escape.png")
    default = ModelServer(f"models:/{model_id}", uri, cwd=image_project.data)
    rooted = ModelServer(
        f"models:/{model_id}", uri, cwd=base, env={"STACKING_IMAGE_ROOT": str(root)}
    )
    with default, rooted:
        yield default.wait(), rooted.wait(), root, result


def _refusal(answer: dict) -> str:
    """The model's own message in an MLflow error answer (MLflow puts the request's
    rows before it)."""
    return answer["message"].split("Error: ", 1)[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_served_model_answers_images_in_rows_and_reads_no_path_by_default(served, image_project):
    default, _, _, result = served
    test = pd.read_csv(image_project.data / "test.csv")
    status, answer = default.post(test.assign(path=_data_uris(image_project.data, test["path"])))
    assert status == 200, answer
    got = pd.DataFrame(answer["predictions"])
    np.testing.assert_allclose(_ensemble(got), _ensemble(result.test_predictions), atol=1e-9)
    assert got["prediction"].tolist() == result.test_predictions["prediction"].tolist()
    # The relative paths exist in the server's working folder; they are not read.
    status, answer = default.post(test.head(2))
    assert status == 400
    assert _refusal(answer) == (
        f"row 0 (id {test['id'].tolist()[0]!r}), column 'path': this model reads no files on the "
        "server; send the image itself as 'data:image/png;base64,<base64 bytes>'"
    )
    assert "stack_trace" not in answer


@pytest.mark.e2e
@pytest.mark.slow
def test_served_model_with_an_image_root_reads_only_inside_it(served, image_project):
    _, rooted, root, result = served
    test = pd.read_csv(root / "test.csv")
    status, answer = rooted.post(test)
    assert status == 200, answer
    got = pd.DataFrame(answer["predictions"])
    np.testing.assert_allclose(_ensemble(got), _ensemble(result.test_predictions), atol=1e-9)
    refused = {
        str(root / test["path"][0]): "absolute paths are refused",
        "../images/" + test["path"][0]: "paths with '..' are refused",
        "escape.png": "no readable image at that path in the server's image folder",
        "missing.png": "no readable image at that path in the server's image folder",
        "test.csv": "no readable image at that path in the server's image folder",
    }
    answers = {}
    for value, reason in refused.items():
        status, answer = rooted.post(test.head(1).assign(path=value))
        message = _refusal(answer)
        assert status == 400 and reason in message, message
        assert str(root.parent) not in message and "secret" not in message, message
        answers[value] = message
    # A symlink out of the root, a missing file and a file that is no image: one answer.
    assert answers["escape.png"] == answers["missing.png"] == answers["test.csv"]


@pytest.mark.e2e
@pytest.mark.slow
def test_served_model_refuses_a_bomb_and_too_many_rows_then_answers_the_next(served, image_project):
    import struct
    import zlib

    default, _, _, result = served
    test = pd.read_csv(image_project.data / "test.csv")
    good = test.assign(path=_data_uris(image_project.data, test["path"]))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    # 20000 x 20000 pixels of zeros (1 bit each) in about 60 KB.
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 20_000 // 8)
    idat = b"".join(packer.compress(row) for _ in range(20_000)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 1, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    bomb += chunk(b"IEND", b"")
    uri = "data:image/png;base64," + base64.b64encode(bomb).decode()
    status, answer = default.post(good.head(3).assign(path=[*good["path"][:2], uri]))
    assert status == 400
    assert _refusal(answer).startswith(
        f"row 2 (id {test['id'].tolist()[2]!r}), column 'path': the image has more pixels than the "
        "limit of 25000000"
    ), _refusal(answer)
    many = pd.concat([good] * 34, ignore_index=True)  # 1020 rows; the default limit is 1000
    status, answer = default.post(many)
    assert status == 400
    assert _refusal(answer) == (
        "the request has 1020 rows; this model answers at most 1000 per request: send them "
        "in smaller requests"
    )
    status, answer = default.post(good)
    assert status == 200, answer
    np.testing.assert_allclose(
        _ensemble(pd.DataFrame(answer["predictions"])),
        _ensemble(result.test_predictions),
        atol=1e-9,
    )


def test_demo_backbone_takes_batch_norm_statistics_from_unlabeled_images():
    """The image demo's random MobileNetV2: each batch-norm layer's moving statistics are
    those of its input on the calibration images, so its embeddings do not vanish."""
    import keras

    spec = importlib.util.spec_from_file_location(
        "demo_images", MAKE_IMAGES.parent / "train_base_models.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    images = np.random.default_rng(0).uniform(0, 255, (48, 32, 32, 3)).astype("float32")
    model = demo.build_backbone(images)
    conv = keras.Model(model.inputs, model.get_layer("Conv1").output)(images).numpy()
    norm = model.get_layer("bn_Conv1")
    np.testing.assert_allclose(norm.moving_mean.numpy(), conv.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(
        norm.moving_variance.numpy(), conv.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-6
    )
    assert norm.momentum == 0.999  # MobileNetV2's own, restored after the pass
    embedding = keras.Model(model.inputs, model.get_layer("block_5_add").output)(images)
    assert float(np.std(embedding)) > 0.1  # random weights without statistics: ~1e-4
