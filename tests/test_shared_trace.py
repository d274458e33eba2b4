"""Fold models of one architecture share one traced function (weights as arguments).

Each fold model is saved and loaded back; every prediction is compared with the model's
own direct call, so a shared function that ran the wrong weights (the first fold's, say)
fails here."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stacking.base import load_base_model as load_model
from stacking.base._keras import SHARED_FUNCTIONS, SharedFunctions, architecture_key


def _mlp(units: int = 16, n_out: int = 3) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(n_out, activation="softmax"),
        ]
    )


def _functional(names: tuple[str, str] | None = None) -> keras.Model:
    a = keras.Input((4,), name=names[0] if names else None)
    b = keras.Input((2,), name=names[1] if names else None)
    h = keras.layers.Dense(5, activation="tanh")(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], keras.layers.Dense(2, activation="softmax")(h))


def _key(model) -> str | None:
    return architecture_key(
        model._model, model.kind, model.output_index, model._inputs, model._struct
    )


@pytest.fixture(scope="module")
def fold_set(tmp_path_factory):
    """Five fold models built in one session (so their layers are named dense, dense_1,
    dense_2, ...), each with its own random weights, saved and loaded back."""
    folder = tmp_path_factory.mktemp("folds")
    paths = []
    for k in range(5):
        path = folder / f"fold_{k}.keras"
        _mlp().save(path)
        paths.append(path)
    return paths


def test_fold_models_share_one_trace_and_keep_their_own_weights(fold_set):
    SHARED_FUNCTIONS.clear()
    x = np.random.default_rng(0).normal(size=(300, 6)).astype("float32")
    models = [load_model(p) for p in fold_set]
    outputs = []
    for model in models:
        got = model.predict([x], batch_size=128)  # three batches, the last one short
        np.testing.assert_allclose(got, model._model(x, training=False).numpy(), atol=1e-6)
        outputs.append(got)
    assert len({_key(m) for m in models}) == 1
    assert SHARED_FUNCTIONS.traced == 1 and SHARED_FUNCTIONS.tracing_count() == 1
    # the folds' weights differ, so their predictions must too
    assert all(not np.allclose(outputs[0], o) for o in outputs[1:])


def test_other_architectures_get_their_own_function(fold_set):
    SHARED_FUNCTIONS.clear()
    x = np.random.default_rng(1).normal(size=(10, 6)).astype("float32")
    first = load_model(fold_set[0])
    wider, more_classes = _mlp(units=17), _mlp(n_out=4)
    keys = {_key(first)}
    for i, other in enumerate([wider, more_classes]):
        path = fold_set[0].parent / f"other_{i}.keras"
        other.save(path)
        loaded = load_model(path)
        np.testing.assert_allclose(
            loaded.predict([x], batch_size=8), other(x, training=False).numpy(), atol=1e-6
        )
        keys.add(_key(loaded))
    first.predict([x], batch_size=8)
    assert len(keys) == 3 and SHARED_FUNCTIONS.traced == 3


def test_multi_input_models_share_and_named_inputs_do_not_mix(tmp_path):
    SHARED_FUNCTIONS.clear()
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 4)).astype("float32"), rng.normal(size=(7, 2)).astype("float32")
    loaded = []
    for k in range(2):
        _functional().save(tmp_path / f"f{k}.keras")
        loaded.append(load_model(tmp_path / f"f{k}.keras"))
    for model in loaded:
        np.testing.assert_allclose(
            model.predict([a, b], batch_size=4), model._model([a, b]).numpy(), atol=1e-6
        )
    assert SHARED_FUNCTIONS.traced == 1
    # inputs named differently are fed by those names: not the same call
    _functional(("left", "right")).save(tmp_path / "named.keras")
    named = load_model(tmp_path / "named.keras")
    assert named.input_names == ["left", "right"]
    np.testing.assert_allclose(
        named.predict([a, b], batch_size=4), named._model([a, b]).numpy(), atol=1e-6
    )


@keras.saving.register_keras_serializable(package="test_shared_trace")
class Scaled(keras.Model):
    def __init__(self, factor: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = factor
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x) * self.factor


def test_subclassed_models_are_never_shared(tmp_path):
    """A subclassed model's call can depend on state its configuration does not show
    (here ``factor``, left out of get_config): sharing would be wrong."""
    SHARED_FUNCTIONS.clear()
    x = np.ones((3, 6), "float32")
    for factor in (1.0, 3.0):
        model = Scaled(factor)
        model(x)
        model.save(tmp_path / f"s{factor}.keras")
    loaded = load_model(tmp_path / "s1.0.keras", custom_objects=[__name__])
    assert loaded.kind == "subclassed" and _key(loaded) is None
    loaded.predict([x], batch_size=4)
    assert SHARED_FUNCTIONS.traced == 0


def test_least_recently_used_function_goes_first():
    cache = SharedFunctions(capacity=2)
    built = []
    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, lambda k=key: built.append(k) or (lambda: k))
    # "b" was pushed out by "c" (a was used after b), so it was built again
    assert built == ["a", "b", "c", "b"]
