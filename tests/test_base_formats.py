"""Every model kind in every format that can hold it, fed by declared order or by name.

The matrix {Sequential, Functional (also nested), subclassed} x {.keras, .h5, SavedModel,
.tflite} x {single input, multi-input, multi-output} comes from the session fixture
``model_zoo`` (tests/conftest.py). Combinations a format cannot hold are asserted to be
impossible, never skipped:

- Sequential is single-input and single-output by construction (no such models exist);
- HDF5 (.h5) stores only graph models: Keras refuses to save a subclassed model to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stacking.base import (
    MANIFEST,
    arrange_inputs,
    get_loader,
    inspect_model,
    load_base_model,
    read_manifest,
    resolve_base_model,
    write_manifest,
)
from stacking.config import BaseModelSpec
from stacking.errors import BaseModelError
from stacking.executors import Job, run_job
from stacking.folds import FoldPlan
from tests.conftest import ZOO_FORMATS

ROOT = Path(__file__).resolve().parents[1]
ZOO_NAMES = [
    "sequential-single",
    "functional-single",
    "functional-multi_input",
    "functional-multi_output",
    "functional-nested",
    "subclassed-single",
    "subclassed-multi_input",
    "subclassed-multi_output",
]
# Not stored: subclassed in .h5 (impossible, see test_h5_cannot_hold_subclassed_models).
NOT_STORED = {(n, "h5") for n in ZOO_NAMES if n.startswith("subclassed")}
CASES = [(n, f) for n in ZOO_NAMES for f in ZOO_FORMATS if (n, f) not in NOT_STORED]


def _expected_kind(name: str, fmt: str) -> str:
    return name.split("-")[0] if fmt in ("keras", "h5") else fmt


@pytest.mark.parametrize(("name", "fmt"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_format_predicts_every_output_like_a_direct_call(model_zoo, name, fmt):
    entry = model_zoo[name]
    path = entry.paths[fmt]
    frozen = get_loader(path).load(path)
    assert frozen.kind == _expected_kind(name, fmt)
    assert frozen.input_shapes == [x.shape[1:] for x in entry.inputs]
    assert frozen.input_dtypes == ["float32"] * len(entry.inputs)
    expected = entry.expected()
    assert len(frozen.output_names) == len(expected)
    atol = 1e-6
    for index, output in enumerate(frozen.output_names):
        for pick in (output, index):  # by name and by index
            frozen.select_output(pick)
            got = frozen.predict(entry.inputs, batch_size=7)  # 3 batches, last partial
            np.testing.assert_allclose(got, expected[index], atol=atol, err_msg=str(pick))


@pytest.mark.parametrize("fmt", ZOO_FORMATS)
def test_multi_input_names_keep_declared_order_in_every_format(model_zoo, fmt):
    """Inputs `zeta`, `alpha` sort the other way round: fed by name or by declared
    position, each reaches its own input (SavedModel used to feed them sorted)."""
    entry = model_zoo["functional-multi_input"]
    zeta, alpha = entry.inputs
    frozen = load_base_model(entry.paths[fmt])
    assert frozen.input_names == ["zeta", "alpha"]
    assert frozen.declared_order
    by_name = arrange_inputs(frozen, [alpha, zeta], ["alpha", "zeta"], model_name="m")
    assert by_name[0] is zeta and by_name[1] is alpha
    atol = 1e-6
    expected = entry.expected()[0]
    np.testing.assert_allclose(frozen.predict(by_name, batch_size=64), expected, atol=atol)
    swapped = frozen.predict([alpha, zeta], batch_size=64)
    assert np.abs(swapped - expected).max() > 1e-2  # the order matters for this model


def test_savedmodel_without_keras_endpoint_keeps_signature_argument_order(tmp_path):
    """A tf.Module SavedModel: its ``__call__`` keeps the declared order (the signature's
    names alone come back in any order); without it, a list of inputs is refused."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec((None, 1), tf.float32, name="zeta"),
                tf.TensorSpec((None, 1), tf.float32, name="alpha"),
            ]
        )
        def __call__(self, zeta, alpha):
            return {"y": 10.0 * zeta + alpha}

    module = Module()
    tf.saved_model.save(
        module, str(tmp_path / "sm"), signatures={"serving_default": module.__call__}
    )
    frozen = load_base_model(tmp_path / "sm")
    assert frozen.input_names == ["zeta", "alpha"]
    got = frozen.predict([np.ones((3, 1)), np.zeros((3, 1))], batch_size=2)
    np.testing.assert_allclose(got, np.full((3, 1), 10.0))
    plain = tf.Module()  # only the signature is saved: names, no order
    plain.f = module.__call__
    tf.saved_model.save(plain, str(tmp_path / "bare"), signatures={"serving_default": plain.f})
    bare = load_base_model(tmp_path / "bare")
    assert not bare.declared_order
    with pytest.raises(BaseModelError, match=r"declares no order"):
        arrange_inputs(bare, [np.ones((3, 1))] * 2, None, model_name="bare")


def test_dict_input_model_is_fed_by_name_only(tmp_path):
    import keras

    a, b = keras.Input((2,), name="a"), keras.Input((1,), name="b")
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, b]))
    keras.Model({"a": a, "b": b}, out).save(tmp_path / "d.keras")
    frozen = load_base_model(tmp_path / "d.keras")
    xa, xb = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    with pytest.raises(BaseModelError, match=r"declares no order.*input: \{a: VIEW, b: VIEW\}"):
        arrange_inputs(frozen, [xa, xb], None, model_name="dicty")
    with pytest.raises(BaseModelError, match=r"has inputs \['a', 'b'\].*unknown \['c'\]"):
        arrange_inputs(frozen, [xa, xb], ["a", "c"], model_name="dicty")
    arranged = arrange_inputs(frozen, [xb, xa], ["b", "a"], model_name="dicty")
    assert frozen.predict(arranged, batch_size=3).shape == (4, 1)


def test_dict_output_model_is_picked_by_key(tmp_path):
    """Keras' own output_names are layer names for dict outputs; the keys are the names."""
    import keras

    x = keras.Input((3,), name="x")
    model = keras.Model(x, {"zz": keras.layers.Dense(2)(x), "aa": keras.layers.Dense(1)(x)})
    model.save(tmp_path / "d.keras")
    data = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    for key in ("aa", "zz"):
        got = load_base_model(tmp_path / "d.keras", output=key).predict([data], batch_size=2)
        np.testing.assert_allclose(got, model(data)[key], atol=1e-6)


def test_h5_cannot_hold_subclassed_models(model_zoo, tmp_path):
    """Keras writes a subclassed model to .h5 but cannot restore its weights."""
    model_zoo["subclassed-single"].model.save(tmp_path / "sub.h5")
    with pytest.raises(BaseModelError, match=r"cannot be read back from \.h5.*save it as \.keras"):
        load_base_model(tmp_path / "sub.h5", custom_objects=["zoo_layers"])


def test_text_and_int_inputs_are_fed_in_the_model_dtype_and_checked(tmp_path):
    import keras

    text = keras.Input((1,), dtype="string", name="text")
    ids = keras.Input((3,), dtype="int32", name="ids")
    words = keras.ops.cast(keras.layers.StringLookup(vocabulary=["a", "b"])(text), "float32")
    tokens = keras.layers.Flatten()(keras.layers.Embedding(5, 2)(ids))
    model = keras.Model(
        [text, ids], keras.layers.Dense(1)(keras.layers.concatenate([words, tokens]))
    )
    model.save(tmp_path / "t.keras")
    words_in = np.array([["a"], ["b"], ["zz"]])
    ids_in = np.array([[1, 2, 3], [0, 0, 4], [4, 4, 4]])  # int64: cast to the model's int32
    frozen = load_base_model(tmp_path / "t.keras")
    assert frozen.input_dtypes == ["string", "int32"]
    expected = model([words_in, ids_in.astype("int32")]).numpy()
    np.testing.assert_allclose(frozen.predict([words_in, ids_in], batch_size=2), expected, 1e-6)
    half = keras.Input((2,), dtype="float16")
    keras.Model(half, keras.layers.Dense(1, dtype="float16")(half)).save(tmp_path / "h.keras")
    frozen = load_base_model(tmp_path / "h.keras")
    assert frozen.input_dtypes == ["float16"]
    assert frozen.predict([np.ones((5, 2))], batch_size=2).dtype == np.float16  # float64 in
    path = tmp_path / "t.keras"
    spec = BaseModelSpec(path=path, input="x")
    job = Job("texty", spec, path, [[words_in, ids_in.astype("float32")]], ["k"])
    with pytest.raises(BaseModelError, match=r"'texty'.*input 'ids' expects dtype int32\. Rece"):
        run_job(job)


def test_run_job_feeds_inputs_by_name(model_zoo):
    entry = model_zoo["functional-multi_input"]
    zeta, alpha = entry.inputs
    path = entry.paths["savedmodel"]
    spec = BaseModelSpec(path=path, input={"alpha": "a", "zeta": "z"})
    job = Job("m", spec, path, [[alpha, zeta]], ["k"])
    (got,) = run_job(job)
    np.testing.assert_allclose(got, entry.expected()[0], atol=1e-5)
    job.spec = BaseModelSpec(path=path, input={"alpha": "a", "beta": "b"})
    with pytest.raises(BaseModelError, match=r"inputs \['zeta', 'alpha'\].*unknown \['beta'\]"):
        run_job(job)


def test_lambda_layers_stay_refused(tmp_path):
    import keras

    x = keras.Input((2,))
    keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(x)).save(tmp_path / "lam.keras")
    with pytest.raises(BaseModelError, match="cannot load Keras model"):
        load_base_model(tmp_path / "lam.keras")


def test_custom_objects_module_is_imported_before_loading(model_zoo, tmp_path):
    """In a fresh process the subclassed model loads only with its module named."""
    path = model_zoo["subclassed-single"].paths["keras"]
    code = (
        "import sys; from stacking.cli import main; "
        f"print(main(['inspect', {str(path)!r}])); "
        f"print(main(['inspect', {str(path)!r}, '--custom-objects', 'zoo_layers']))"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path.parent}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "error: cannot load Keras model" in out.stderr and "custom_objects" in out.stderr
    first, *_, last = [line for line in out.stdout.splitlines() if line.strip()]
    assert first == "2" and last == "0"
    assert '"kind": "subclassed"' in out.stdout
    with pytest.raises(BaseModelError, match=r"cannot import custom_objects module 'no_such_m"):
        load_base_model(path, custom_objects=["no_such_mod"])


# --- A Sequential fold directory, end to end ------------------------------------------------


@pytest.fixture
def sequential_folds(model_zoo, tmp_path):
    """Three .h5 Sequential fold models with a manifest (hashes included)."""
    import keras

    plan = FoldPlan(ids=np.array([f"r{i}" for i in range(9)]), folds=np.arange(9) % 3)
    directory = tmp_path / "seq"
    directory.mkdir()
    source = model_zoo["sequential-single"]
    for k in range(3):
        model = keras.models.clone_model(source.model)
        model.set_weights([w + k for w in source.model.get_weights()])
        model.save(directory / f"fold_{k}.h5")
    write_manifest(directory, fold_plan=plan, task="regression", format="keras")
    return directory, plan


def _resolve(directory, plan):
    cfg = BaseModelSpec(path=directory, input="x")
    return resolve_base_model(
        "seq", cfg, folds_digest=plan.digest, n_splits=3, task="regression", classes=[]
    )


def test_sequential_fold_directory_resolves_predicts_and_inspects(sequential_folds, model_zoo):
    directory, plan = sequential_folds
    source = _resolve(directory, plan)
    assert [p.name for p in source.fold_paths] == ["fold_0.h5", "fold_1.h5", "fold_2.h5"]
    x = model_zoo["sequential-single"].inputs[0]
    (got,) = run_job(Job("seq", source.spec, source.fold_paths[0], [[x]], ["k"]))
    np.testing.assert_allclose(got, model_zoo["sequential-single"].expected()[0], atol=1e-5)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "stacking", "inspect", str(directory)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert (info["format"], info["kind"], info["hashes"]) == ("keras", "sequential", "match")
    assert [(i["shape"], i["dtype"]) for i in info["inputs"]] == [([4], "float32")]
    assert info["outputs"][0]["shape"] == [2] and "hidden" in info["layers"]
    assert info["manifest"]["folds_digest"] == plan.digest
    assert set(info["files"]) == {"fold_0.h5", "fold_1.h5", "fold_2.h5"}


def test_replaced_or_swapped_fold_file_is_refused(sequential_folds):
    directory, plan = sequential_folds
    os.replace(directory / "fold_1.h5", directory / "tmp.h5")
    shutil.copy(directory / "fold_0.h5", directory / "fold_1.h5")  # replaced
    with pytest.raises(BaseModelError, match=r"'seq': '.*fold_1\.h5' differs from the file"):
        _resolve(directory, plan)
    assert inspect_model(directory)["hashes"].startswith("DIFFER: ['fold_1.h5']")
    os.replace(directory / "fold_0.h5", directory / "fold_1.h5")  # swapped
    os.replace(directory / "tmp.h5", directory / "fold_0.h5")
    with pytest.raises(BaseModelError, match=r"fold_0\.h5' differs from the file recorded"):
        _resolve(directory, plan)


def test_manifest_without_hashes_still_loads_unchecked(sequential_folds):
    directory, plan = sequential_folds
    manifest = read_manifest(directory)
    del manifest["files"]
    (directory / MANIFEST).write_text(json.dumps(manifest))
    assert _resolve(directory, plan).kind == "folds"
    assert inspect_model(directory)["hashes"].startswith("not checked")


@pytest.mark.parametrize("content", ["42", "[1, 2]"])
def test_manifest_that_is_not_an_object_is_a_clear_error(sequential_folds, content, capsys):
    from stacking.cli import main

    directory, plan = sequential_folds
    (directory / MANIFEST).write_text(content)
    with pytest.raises(BaseModelError, match=r"stacking\.json' holds .*, not a JSON object"):
        _resolve(directory, plan)
    assert main(["inspect", str(directory)]) == 2
    assert "not a JSON object" in capsys.readouterr().err
