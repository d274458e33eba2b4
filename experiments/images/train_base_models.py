"""Train the image demo's base models: three honest sources reading two views of one table.

``configs/images.yaml`` stacks, on the digits written as 32x32 PNG files
(``make_images.py``):

* ``cnn``: a small CNN cross-fitted on the image files (``models/cnn/fold_k.keras``);
* ``mobilenet``: ``keras.applications.MobileNetV2`` (alpha 0.35, ``weights=None``) as a
  frozen backbone whose ``block_5_add`` output feeds a logistic head cross-fitted by
  tf-stacking. Its convolution weights are random (untrained: honest, and no download);
  only its batch-norm statistics are estimated, without labels, on the ``external.csv``
  images, which are disjoint from the stacking rows. A random convolutional network is a
  weak but genuine feature extractor; a pre-trained one would be used the same way;
* ``mlp``: a dense network on the 64 pixel columns of the same table (a second view).

The fold models use the fold plan of ``configs/images.yaml``; what already exists for that
plan is skipped.

    python experiments/images/train_base_models.py [--epochs-scale 0.5] [--force]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stacking.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ load-time notices stay off `make demo`'s output

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "images.yaml"
SIZE = 32


def _make_images():
    spec = importlib.util.spec_from_file_location("make_images", HERE / "make_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cnn():
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 255)(inputs)  # the model carries its own preprocessing
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="cnn")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    return model


def build_mlp():
    import keras
    from keras import layers

    inputs = keras.Input((64,), name="pixels")
    x = layers.Dense(128, activation="relu")(inputs)
    model = keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="mlp")
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    return model


def build_backbone(calibration_images: np.ndarray, seed: int = 0):
    """MobileNetV2 with random weights and batch-norm statistics of unlabeled images.

    With every BatchNormalization momentum at 0, one training-mode pass sets each layer's
    moving mean and variance to those of its input on ``calibration_images`` (each layer
    sees the already normalised output of the previous ones). No weight is trained.
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # MobileNetV2's [-1, 1]
    model = keras.applications.MobileNetV2(
        input_tensor=scaled, alpha=0.35, weights=None, include_top=False, pooling="avg"
    )
    norms = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    momenta = [lyr.momentum for lyr in norms]
    for lyr in norms:
        lyr.momentum = 0.0
    model([calibration_images], training=True)
    for lyr, momentum in zip(norms, momenta):
        lyr.momentum = momentum
    return model


def _read_images(frame: pd.DataFrame, view, folder: Path) -> np.ndarray:
    """Every image of ``frame`` through tf-stacking's own reader (the model sees these)."""
    from stacking.views import read_view

    return read_view(frame, view, root=folder, ids=frame["id"]).to_numpy()


def train_all(
    config: Path = CONFIG, *, epochs_scale: float = 1.0, force: bool = False
) -> dict[str, Path]:
    """Write the data if missing, then train what is not there yet for the config's plan."""
    from stacking import load_config, load_dataset, make_fold_plan, train_fold_models
    from stacking.training import fold_models_exist

    cfg = load_config(config)
    folder = cfg.data.train.parent
    if not cfg.data.train.exists() or force:
        _make_images().write_digit_images(folder, size=SIZE, n_external=200)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    out = {}
    folds = {
        "cnn": (build_cnn, lambda: _read_images(data.train, cfg.data.views["image"], folder), 12),
        "mlp": (build_mlp, lambda: data.train[[f"px_{i}" for i in range(64)]].to_numpy("f4"), 20),
    }
    for name, (build, inputs, epochs) in folds.items():
        out[name] = directory = cfg.base_models[name].path
        if fold_models_exist(directory, plan) and not force:
            print(f"{name}: fold models for plan {plan.digest} already in {directory}, skipped")
            continue
        start = time.perf_counter()
        train_fold_models(
            build,
            inputs(),
            data.y,
            plan,
            directory,
            task=data.task,
            classes=data.classes,
            fit_kwargs={"epochs": max(1, round(epochs * epochs_scale)), "batch_size": 32},
            overwrite=True,
        )
        print(f"{name}: trained {plan.n_splits} fold models in {time.perf_counter() - start:.0f}s")
    out["mobilenet"] = path = cfg.base_models["mobilenet"].path
    if not path.exists() or force:
        external = pd.read_csv(folder / "external.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        build_backbone(_read_images(external, cfg.data.views["image"], folder)).save(path)
        print(f"mobilenet: random MobileNetV2, batch-norm statistics of {len(external)} images")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--force", action="store_true", help="rewrite data, retrain models")
    args = parser.parse_args()
    train_all(args.config, epochs_scale=args.epochs_scale, force=args.force)


if __name__ == "__main__":
    main()
