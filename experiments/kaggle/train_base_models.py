"""Train the worked example's model-based members on the experiment's fold plan:

* ``lgbm_onnx``: LightGBM again, a shallower and more randomised one, as an ONNX fold set
  (``fold_k.onnx`` + ``stacking.json``) through :func:`stacking.train_onnx_fold_models`;
  unlike the prediction files, it is a model: the served ensemble runs it on new rows;
* ``mlp`` and ``logreg``: two small Keras networks (a hidden layer, and a plain logistic
  regression) through :func:`stacking.train_fold_models`.

The networks standardise their inputs with a ``Normalization`` layer whose constants are
the training table's feature means and variances (features only, no labels), as a
notebook's ``StandardScaler`` fitted on train would; they are part of the saved models,
so the stack and the served model feed the raw columns. Directories that already hold
fold models for the plan are skipped.

    python experiments/kaggle/train_base_models.py [--config configs/kaggle.yaml]
        [--epochs-scale 1.0] [--force]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stacking.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's C++ load-time notices stay off `make kaggle-demo`

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "kaggle.yaml"
LGBM_ONNX = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 4,
    "min_child_samples": 20,
    "colsample_bytree": 0.5,
    "subsample": 0.7,
    "subsample_freq": 1,
    "random_state": 1,
    "verbose": -1,
}


def _network(n_features: int, mean: np.ndarray, variance: np.ndarray, hidden: int):
    import keras
    from keras import layers

    inputs = keras.Input((n_features,), name="features")
    x = layers.Normalization(mean=mean, variance=variance)(inputs)
    if hidden:
        x = layers.Dense(hidden, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    return model


# name: (hidden units, epochs)
NETWORKS = {"mlp": (16, 60), "logreg": (0, 80)}


def train_all(
    config: Path = CONFIG,
    *,
    epochs_scale: float = 1.0,
    trees_scale: float = 1.0,
    force: bool = False,
) -> dict[str, Path]:
    from lightgbm import LGBMClassifier

    from stacking import (
        load_config,
        load_dataset,
        make_fold_plan,
        train_fold_models,
        train_onnx_fold_models,
    )
    from stacking.training import fold_models_exist

    cfg = load_config(config)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    features = [c for c in data.train.columns if c not in (data.id_column, "diagnosis")]
    x = data.train[features].to_numpy("float32")
    out = {}

    def todo(name: str) -> Path | None:
        path = cfg.base_models[name].path
        assert path is not None
        out[name] = path
        if fold_models_exist(path, plan) and not force:
            print(f"{name}: fold models for plan {plan.digest} already in {path}, skipped")
            return None
        return path

    if (path := todo("lgbm_onnx")) is not None:
        start = time.perf_counter()
        params = {**LGBM_ONNX, "n_estimators": max(5, round(300 * trees_scale))}
        train_onnx_fold_models(
            lambda: LGBMClassifier(**params),
            x,
            data.y,
            plan,
            path,
            task=data.task,
            classes=data.classes,
            input_name="features",
            overwrite=True,
        )
        print(f"lgbm_onnx: {plan.n_splits} ONNX fold models in {time.perf_counter() - start:.0f}s")
    mean, variance = x.mean(axis=0), x.var(axis=0)
    for name, (hidden, epochs) in NETWORKS.items():
        if (path := todo(name)) is None:
            continue
        start = time.perf_counter()
        train_fold_models(
            lambda hidden=hidden: _network(len(features), mean, variance, hidden),
            x,
            data.y,
            plan,
            path,
            task=data.task,
            classes=data.classes,
            fit_kwargs={"epochs": max(1, round(epochs * epochs_scale)), "batch_size": 32},
            overwrite=True,
        )
        print(f"{name}: {plan.n_splits} Keras fold models in {time.perf_counter() - start:.0f}s")
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
