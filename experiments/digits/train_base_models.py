"""Train the demo's four base models on scikit-learn's bundled digits, cross-fitted.

Writes ``data/train.parquet`` and ``data/test.parquet`` (a stratified 20 % held-out test
split) and one base-model directory per architecture under ``models/``, each with
``fold_0.keras … fold_4.keras`` and a ``stacking.json`` manifest, using the fold plan of
``configs/digits.yaml`` so that the stacking run accepts them. Directories that already
hold fold models for that plan are skipped.

    python experiments/digits/train_base_models.py [--epochs-scale 0.2] [--force]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from stacking.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ load-time notices stay off `make demo`'s output

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "digits.yaml"


def write_data(data_dir: Path, seed: int = 0) -> None:
    """The digits table: ``id``, ``label`` and ``px_0 … px_63`` scaled to [0, 1]."""
    digits = load_digits()
    frame = pd.DataFrame(digits.data / 16.0, columns=[f"px_{i}" for i in range(64)])
    frame.insert(0, "label", digits.target)
    frame.insert(0, "id", np.arange(len(frame)))
    train, test = train_test_split(frame, test_size=0.2, stratify=frame.label, random_state=seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    train.to_parquet(data_dir / "train.parquet", index=False)
    test.to_parquet(data_dir / "test.parquet", index=False)


def _compile(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3 if model.name != "linear" else 1e-2),
        loss="sparse_categorical_crossentropy",
    )
    return model


def build_mlp():
    import keras
    from keras import layers

    inputs = keras.Input((64,))
    x = layers.Dense(256, activation="relu")(inputs)
    x = layers.Dropout(0.4)(x)
    return _compile(keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="mlp"))


def build_cnn():
    import keras
    from keras import layers

    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    return _compile(keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="cnn"))


def build_linear():
    import keras
    from keras import layers

    inputs = keras.Input((64,))
    return _compile(
        keras.Model(inputs, layers.Dense(10, activation="softmax")(inputs), name="linear")
    )


def build_gru():
    """Reads the image as a sequence of 8 rows: a genuinely different inductive bias."""
    import keras
    from keras import layers

    inputs = keras.Input((8, 8))
    x = layers.GRU(48)(inputs)
    return _compile(keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="gru"))


# name: (builder, view shape, epochs)
ARCHITECTURES = {
    "mlp": (build_mlp, None, 80),
    "cnn": (build_cnn, (8, 8, 1), 50),
    "linear": (build_linear, None, 30),
    "gru": (build_gru, (8, 8), 60),
}


def train_all(
    config: Path = CONFIG,
    *,
    epochs_scale: float = 1.0,
    force: bool = False,
    only: list[str] | None = None,
) -> dict[str, Path]:
    """Train every architecture's fold models for ``config``'s fold plan."""
    from stacking import load_config, load_dataset, make_fold_plan, train_fold_models
    from stacking.training import fold_models_exist

    cfg = load_config(config)
    if not cfg.data.train.exists() or force:
        write_data(cfg.data.train.parent)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    pixels = data.train[[f"px_{i}" for i in range(64)]].to_numpy("float32")
    out = {}
    for name, (build, shape, epochs) in ARCHITECTURES.items():
        if only and name not in only:
            continue
        directory = cfg.base_models[name].path
        out[name] = directory
        if fold_models_exist(directory, plan) and not force:
            print(f"{name}: fold models for plan {plan.digest} already in {directory}, skipped")
            continue
        start = time.perf_counter()
        x = pixels if shape is None else pixels.reshape(-1, *shape)
        train_fold_models(
            build,
            x,
            data.y,
            plan,
            directory,
            task=data.task,
            classes=data.classes,
            fit_kwargs={"epochs": max(1, round(epochs * epochs_scale)), "batch_size": 32},
            overwrite=True,
        )
        print(f"{name}: trained {plan.n_splits} fold models in {time.perf_counter() - start:.0f}s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--force", action="store_true", help="retrain even if models exist")
    args = parser.parse_args()
    train_all(args.config, epochs_scale=args.epochs_scale, force=args.force)


if __name__ == "__main__":
    main()
