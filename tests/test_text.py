"""Text views end to end: Keras models holding their own TextVectorization, fed tf.string.

Sentences are generated from word lists (seeded): a positive or negative review built
from filler words and a few words of its class, with one word of the other class now and
then. A text model (``TextVectorization`` with a fixed vocabulary, so nothing is fitted
on held-out rows) is cross-fitted with ``train_fold_models`` and stacked with a dense
model on numeric columns of the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import logged_ensemble, sqlite_store

from stacking import Experiment, load_config, load_dataset, make_fold_plan
from stacking.predictor import load_predictor

N_SPLITS = 3
POSITIVE = ["good", "great", "lovely", "fine", "superb", "happy", "excellent", "nice"]
NEGATIVE = ["bad", "awful", "poor", "sad", "terrible", "boring", "broken", "ugly"]
FILLER = ["the", "a", "film", "was", "and", "very", "plot", "actor", "it", "this", "quite"]
VOCABULARY = sorted(set(POSITIVE + NEGATIVE + FILLER))


def make_reviews(n: int, seed: int) -> pd.DataFrame:
    """``id``, ``text``, two numeric columns ``f_0``, ``f_1`` and ``label`` (neg/pos)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = list(rng.choice(FILLER, rng.integers(4, 8)))
        words += list(rng.choice(own, rng.integers(1, 3)))
        if rng.random() < 0.3:
            words.append(rng.choice(other))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame(
        {
            "id": [f"t{i:03d}" for i in range(n)],
            "text": texts,
            "f_0": labels + rng.normal(0, 1.0, n),  # weakly informative numeric columns
            "f_1": rng.normal(0, 1.0, n),
            "label": np.array(["neg", "pos"])[labels],
        }
    )


def build_text_model():
    import keras
    from keras import layers

    inputs = keras.Input(shape=(1,), dtype="string", name="text")
    tokens = layers.TextVectorization(vocabulary=VOCABULARY, output_sequence_length=12)(inputs)
    x = layers.Embedding(len(VOCABULARY) + 2, 8)(tokens)
    x = layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model


def build_dense():
    import keras
    from keras import layers

    inputs = keras.Input((2,))
    model = keras.Model(inputs, layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    return model


@dataclass
class TextProject:
    root: Path

    def config(self, tmp_path: Path) -> Path:
        raw = {
            "name": "text",
            "data": {
                "train": str(self.root / "train.csv"),
                "test": str(self.root / "test.csv"),
                "id": "id",
                "target": "label",
                "task": "binary",
                "views": {"text": {"text": "text"}, "numbers": {"columns": ["f_0", "f_1"]}},
            },
            "folds": {"kind": "stratified", "n_splits": N_SPLITS, "seed": 0},
            "base_models": {
                "words": {"path": str(self.root / "models" / "words"), "input": "text"},
                "numbers": {"path": str(self.root / "models" / "numbers"), "input": "numbers"},
            },
            "meta": {"candidates": ["logistic", "mean"], "bootstrap": 0},
            "tracking": {"uri": sqlite_store(tmp_path), "experiment": "text"},
            "cache": {"dir": str(tmp_path / "cache")},
        }
        path = tmp_path / "text.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path


@pytest.fixture(scope="session")
def text_project(tmp_path_factory) -> TextProject:
    from stacking import train_fold_models

    root = tmp_path_factory.mktemp("text")
    frame = make_reviews(200, seed=3)
    frame.iloc[:150].to_csv(root / "train.csv", index=False)
    frame.iloc[150:].drop(columns="label").to_csv(root / "test.csv", index=False)
    project = TextProject(root)
    cfg = load_config(project.config(root))
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    texts = data.train["text"].to_numpy(dtype=object).reshape(-1, 1)
    numbers = data.train[["f_0", "f_1"]].to_numpy("float32")
    for name, build, x in [("words", build_text_model, texts), ("numbers", build_dense, numbers)]:
        train_fold_models(
            build,
            x,
            data.y,
            plan,
            root / "models" / name,
            task=data.task,
            classes=data.classes,
            fit_kwargs={"epochs": 10, "batch_size": 32},
        )
    return project


@pytest.fixture(scope="module")
def text_run(text_project, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-run")
    result = Experiment.from_yaml(
        text_project.config(tmp), output_dir=tmp / "out", progress=False
    ).run()
    return result, tmp


@pytest.mark.e2e
def test_text_oof_equals_direct_calls_of_the_fold_models(text_run, text_project):
    import keras
    import tensorflow as tf

    result, _ = text_run
    train = pd.read_csv(text_project.root / "train.csv")
    oof = result.oof.set_index("id").loc[train["id"]]
    for k in range(N_SPLITS):
        rows = (oof["fold"] == k).to_numpy()
        model = keras.models.load_model(text_project.root / "models" / "words" / f"fold_{k}.keras")
        texts = train["text"][rows].to_numpy(dtype=object).reshape(-1, 1)
        direct = model.predict(tf.constant(texts.astype(str)), verbose=0)[:, 0]
        np.testing.assert_allclose(oof.loc[rows, "words__pos"].to_numpy(), direct, atol=1e-5)
    # The text model read the words: far better than chance.
    accuracy = ((oof["words__pos"] > 0.5) == (oof["label"] == "pos")).mean()
    assert accuracy > 0.8
    assert set(result.leaderboard["model"]) >= {"words", "numbers", "logistic", "mean"}


@pytest.mark.e2e
def test_text_predictor_serves_unlabeled_rows_like_test_predictions(text_run, text_project):
    result, tmp = text_run
    test = pd.read_csv(text_project.root / "test.csv")
    assert "label" not in test.columns
    got = load_predictor(tmp / "out").predict(test)
    columns = ["ensemble__neg", "ensemble__pos"]
    np.testing.assert_allclose(
        got[columns].to_numpy(), result.test_predictions[columns].to_numpy(), atol=1e-10
    )
    assert got["prediction"].tolist() == result.test_predictions["prediction"].tolist()


@pytest.mark.e2e
def test_text_pyfunc_model_serves_unlabeled_rows(text_run, text_project):
    result, tmp = text_run
    model, _ = logged_ensemble(load_config(tmp / "text.yaml").tracking.uri, result.run_id)
    test = pd.read_csv(text_project.root / "test.csv")
    got = model.predict(test[["f_1", "text", "id", "f_0"]])  # no label, columns reordered
    columns = ["ensemble__neg", "ensemble__pos"]
    np.testing.assert_allclose(
        got[columns].to_numpy(), result.test_predictions[columns].to_numpy(), atol=1e-10
    )
