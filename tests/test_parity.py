"""Fold-set parity in every promised combination: task x output kind x model format.

For each task (binary, multiclass, multilabel, regression), each output kind the task
has (probabilities; logits for classification) and each format the loaders read (.keras,
.h5, SavedModel folder, .tflite), a fold set is trained once per session with
:func:`stacking.train_fold_models` and written in that format. The engine's OOF must
equal fold model *k* called directly on fold *k*'s rows, and its test predictions the
mean of the fold models' direct calls. "Directly" means without the project's inference
code: Keras' ``model(x)``, ``tf.saved_model.load(...).serve``, a LiteRT interpreter, and
softmax / sigmoid from SciPy for logits.

Tolerances are the tightest each format passes (measured, see ``ATOL``): a float16 TFLite
conversion (differences of ~1e-3) or a row predicted by the wrong fold model fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import N_FEATURES, build_model, freeze_heap_with_tensorflow
from scipy.special import expit
from scipy.special import softmax as scipy_softmax

from stacking.base import resolve_base_model, write_manifest
from stacking.cache import NullCacheStore
from stacking.config import BaseModelSpec
from stacking.engine import TrainRows, predict_base_models
from stacking.executors import LocalExecutor
from stacking.folds import FoldPlan
from stacking.training import train_fold_models

N_ROWS, N_TEST, N_SPLITS = 60, 20, 2
N_OUTPUTS = {"binary": 2, "multiclass": 3, "multilabel": 3, "regression": 1}
FORMATS = ("keras", "h5", "savedmodel", "tflite")
SETS = [
    (task, kind)
    for task in N_OUTPUTS
    for kind in (("values",) if task == "regression" else ("proba", "logits"))
]
CASES = [(task, kind, fmt) for task, kind in SETS for fmt in FORMATS]
# Measured largest differences: .keras/.h5 2.4e-7 (tf-stacking runs a compiled function,
# the direct call runs eagerly: float32 rounding), SavedModel and TFLite 1.1e-16 (the same
# graph or interpreter, so only float64 rounding of softmax/sigmoid).
ATOL = {"keras": 1e-6, "h5": 1e-6, "savedmodel": 1e-12, "tflite": 1e-12}


def _data(task: str, seed: int):
    """Rows spread wide enough that logit outputs leave [0, 1] (their kind is detected)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, size=(N_ROWS + N_TEST, N_FEATURES)).astype("float32")
    if task == "regression":
        y = x[:, 0] - x[:, 1]
    elif task == "multilabel":
        y = (x[:, :3] > 0).astype("int64")
    else:
        y = rng.integers(0, N_OUTPUTS[task], len(x))
    return x[:N_ROWS], y[:N_ROWS], x[N_ROWS:]


def _write_formats(dirs: dict, plan: FoldPlan, task: str, classes) -> None:
    """The fold models of ``dirs["keras"]`` re-saved in every other format, each folder
    with its manifest; the .tflite files are converted from the SavedModel folders."""
    import keras
    import tensorflow as tf

    for fmt in FORMATS[1:]:
        dirs[fmt].mkdir()
    for k in range(N_SPLITS):
        model = keras.models.load_model(dirs["keras"] / f"fold_{k}.keras")
        model.save(dirs["h5"] / f"fold_{k}.h5")
        model.export(dirs["savedmodel"] / f"fold_{k}", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(dirs["savedmodel"] / f"fold_{k}"))
        (dirs["tflite"] / f"fold_{k}.tflite").write_bytes(converter.convert())
    for fmt in FORMATS[1:]:
        write_manifest(dirs[fmt], fold_plan=plan, task=task, classes=classes, format=fmt)


def _eager(model):
    """The model trained eagerly: one step per fold, cheaper than tracing a train function
    (the fold models only need to differ; the parity is of the saved files)."""
    model.run_eagerly = True
    return model


@pytest.fixture(scope="session")
def fold_sets(tmp_path_factory):
    """``{(task, kind): (plan, x, y, x_test, {format: directory})}``, trained once."""
    freeze_heap_with_tensorflow()
    root = tmp_path_factory.mktemp("parity")
    sets = {}
    for i, (task, kind) in enumerate(SETS):
        x, y, x_test = _data(task, seed=i)
        ids = np.array([f"r{j}" for j in range(N_ROWS)])
        plan = FoldPlan(ids=ids, folds=np.arange(N_ROWS) % N_SPLITS)
        classes = None if task == "regression" else list(range(N_OUTPUTS[task]))
        base = root / f"{task}-{kind}"
        dirs = {fmt: base / fmt for fmt in FORMATS}
        train_fold_models(
            lambda task=task, kind=kind: _eager(
                build_model(task, N_OUTPUTS[task], hidden=4, logits=kind == "logits")
            ),
            x,
            y,
            plan,
            dirs["keras"],
            task=task,
            classes=classes,
            fit_kwargs={"epochs": 1, "batch_size": 64},
        )
        _write_formats(dirs, plan, task, classes)
        sets[task, kind] = (plan, x, y, x_test, classes, dirs)
    return sets


def _direct_raw(path, *xs: np.ndarray) -> list[np.ndarray]:
    """The model file's own outputs for each of ``xs``, called without tf-stacking's
    loaders; the file is loaded once (loading a SavedModel costs more than the calls)."""
    if path.suffix in (".keras", ".h5"):
        import keras

        model = keras.models.load_model(path, compile=False)
        return [np.asarray(model(x, training=False)) for x in xs]
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        outputs = []
        for x in xs:
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            outputs.append(np.array(interpreter.get_tensor(out["index"])))
        return outputs
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its functions hold weak references
    return [loaded.serve(tf.constant(x)).numpy() for x in xs]


def _as_probabilities(raw: np.ndarray, task: str, kind: str) -> np.ndarray:
    """The representation of stacking.metrics, written out here from the task's rules."""
    raw = raw.astype(np.float64)
    if task == "regression":
        return raw[:, 0]
    if kind == "logits":
        raw = scipy_softmax(raw, axis=1) if task == "multiclass" else expit(raw)
    return np.column_stack([1 - raw[:, 0], raw[:, 0]]) if task == "binary" else raw


@pytest.mark.parametrize(("task", "kind", "fmt"), CASES, ids=["-".join(c) for c in CASES])
def test_fold_set_oof_and_test_equal_direct_calls(fold_sets, task, kind, fmt):
    plan, x, y, x_test, classes, dirs = fold_sets[task, kind]
    source = resolve_base_model(
        "m",
        BaseModelSpec(path=dirs[fmt], input="x"),
        folds_digest=plan.digest,
        n_splits=N_SPLITS,
        task=task,
        classes=classes or [],
    )
    suffix = {"keras": ".keras", "h5": ".h5", "savedmodel": "", "tflite": ".tflite"}[fmt]
    assert [p.name for p in source.fold_paths] == [f"fold_{k}{suffix}" for k in range(N_SPLITS)]
    assert source.row_paths == source.fold_paths  # test rows: the mean of the fold models
    pred = predict_base_models(
        [source],
        task=task,
        n_outputs=N_OUTPUTS[task],
        executor=LocalExecutor(False),
        cache=NullCacheStore(),
        train=TrainRows({"m": [x]}, plan, y),
        rows={"m": [x_test]},
        batch_size=16,  # several batches per fold: batching must not change a row
    )["m"]
    if task != "regression":  # the detected kind decides the squashing below
        assert pred.outputs_are == kind

    expected_oof = np.full_like(pred.oof, np.nan)
    tests = []
    for k, path in enumerate(source.fold_paths):
        rows = plan.test_index(k)
        # Fold 1's model also predicts fold 0's rows, for the check at the end.
        xs = (x[rows], x_test, x[plan.test_index(0)]) if k == 1 else (x[rows], x_test)
        raw = [_as_probabilities(out, task, kind) for out in _direct_raw(path, *xs)]
        expected_oof[rows] = raw[0]
        tests.append(raw[1])
        if k == 1:
            other = raw[2]
    np.testing.assert_allclose(pred.oof, expected_oof, rtol=0, atol=ATOL[fmt])
    np.testing.assert_allclose(pred.test, np.mean(tests, axis=0), rtol=0, atol=ATOL[fmt])
    # The fold models differ, so a row predicted by another fold's model would fail above.
    assert np.abs(other - expected_oof[plan.test_index(0)]).max() > 100 * ATOL[fmt]
