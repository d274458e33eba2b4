"""Shared fixtures: small tabular projects with real Keras fold models saved to disk.

Models are trained once per session (TensorFlow builds graphs slowly) and shared; every
test that runs an experiment writes its results and MLflow store under its own
``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
import yaml
from filelock import FileLock, Timeout
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression

N_SPLITS = 3
N_FEATURES = 6


_STORE_TEMPLATE: list[Path] = []  # its folder, set once per worker by the session fixture below


def _store_template() -> Path:
    """The empty migrated store, made at first use: a session whose tests use no MLflow
    store (the metric tests, each mutant of ``make mutation``) does not pay for it."""
    path = _STORE_TEMPLATE[0] / "empty.db"
    if not path.exists():
        import mlflow

        mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def sqlite_store(directory: Path) -> str:
    """The URI of an MLflow SQLite store at ``directory/mlflow.db``, started from a copy of an
    empty migrated store: MLflow creates a new store by running ~40 schema migrations (~1 s
    of CPU per test). Tests of what happens when a store is created do not use this."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mlflow.db"
    if not path.exists() and _STORE_TEMPLATE:
        shutil.copy(_store_template(), path)
    return f"sqlite:///{path}"


def logged_ensemble(uri: str, run_id: str):
    """``(pyfunc model, model id)`` of the ensemble model logged by run ``run_id`` in the
    store at ``uri``, loaded as a user would: ``mlflow.pyfunc.load_model("models:/ID")``."""
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    model_id = run.data.tags["stacking.ensemble_model_id"]
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.pyfunc.load_model(f"models:/{model_id}"), model_id
    finally:
        mlflow.set_tracking_uri(None)


class ModelServer:
    """``mlflow models serve`` of a logged model on 127.0.0.1, as an HTTP client meets it.

    Starting one costs seconds (a Python with TensorFlow and the model): start the ones a
    module needs, then :meth:`wait` for each, so that they load in parallel::

        with ModelServer(f"models:/{model_id}", uri, cwd=tmp_path) as server:
            status, answer = server.wait().post(rows)
    """

    def __init__(self, model_uri: str, tracking_uri: str, *, cwd: Path, env=None) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        bin_dir = str(Path(sys.executable).parent)  # mlflow runs `uvicorn` from the venv
        environ = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})}
        environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
        cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve"]
        cmd += ["-m", model_uri, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def wait(self, timeout: float = 180) -> ModelServer:
        """Return once the server answers ``/ping``."""
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2)
                return self
            except OSError:
                assert self.process.poll() is None, self.process.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow models serve did not start"
                time.sleep(0.5)

    def post(self, rows: pd.DataFrame) -> tuple[int, dict]:
        """``(HTTP status, JSON answer)`` of ``/invocations`` for ``rows``."""
        import json
        import urllib.error
        import urllib.request

        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split"))})
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/invocations",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def close(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.process.stderr.close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve_and_predict(uri: str, model_id: str, rows: pd.DataFrame, *, cwd: Path) -> pd.DataFrame:
    """``rows`` answered over HTTP by ``mlflow models serve`` of logged model ``model_id``
    (store ``uri``), started in ``cwd`` and stopped after (one request, one server)."""
    with ModelServer(f"models:/{model_id}", uri, cwd=cwd) as server:
        status, answer = server.wait().post(rows)
    assert status == 200, answer
    return pd.DataFrame(answer["predictions"])


@pytest.fixture(scope="session", autouse=True)
def _mlflow_store_folder(tmp_path_factory):
    _STORE_TEMPLATE.append(tmp_path_factory.mktemp("mlflow-template"))
    yield
    _STORE_TEMPLATE.clear()


@pytest.fixture(scope="session")
def _mlflow_store_template(_mlflow_store_folder) -> Path:
    """The path of the session's empty migrated MLflow store."""
    return _store_template()


@dataclass
class Project:
    """A task's data, fold-model directories and a config that stacks them."""

    task: str
    root: Path
    config_path: Path
    raw: dict

    def config(self, tmp_path: Path, **changes) -> Path:
        """A copy of the config with its MLflow store and cache under ``tmp_path`` and no
        plots (``plots=True`` to have them); ``changes`` set dotted keys."""
        raw = yaml.safe_load(yaml.safe_dump(self.raw, sort_keys=False))
        raw["tracking"] = {"uri": sqlite_store(tmp_path), "experiment": "tests"}
        raw["cache"] = {"dir": str(tmp_path / "cache")}
        # Plots cost ~0.5 s of every run; the tests that check them ask for them.
        raw["plots"] = False
        for dotted, value in changes.items():
            node = raw
            *parents, last = dotted.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / f"{self.task}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path


def _frame(task: str, n: int, seed: int) -> tuple[pd.DataFrame, list[str] | str]:
    if task == "regression":
        X, y = make_regression(n, N_FEATURES, noise=10.0, random_state=seed)
        y = (y - y.mean()) / y.std()
        target: list[str] | str = "y"
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        frame["y"] = y
    elif task == "multilabel":
        X, Y = make_multilabel_classification(n, N_FEATURES, n_classes=3, random_state=seed)
        X = X / X.max()
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        target = ["a", "b", "c"]
        for j, name in enumerate(target):
            frame[name] = Y[:, j]
    else:
        n_classes = 2 if task == "binary" else 3
        X, y = make_classification(
            n, N_FEATURES, n_informative=4, n_classes=n_classes, random_state=seed
        )
        frame = pd.DataFrame(X, columns=[f"f_{i}" for i in range(N_FEATURES)])
        labels = np.array(["no", "yes"]) if task == "binary" else np.array(["ant", "bee", "cat"])
        frame["y"] = labels[y]
        target = "y"
    frame.insert(0, "id", [f"r{i:04d}" for i in range(n)])
    frame["w"] = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    return frame, target


def build_model(task: str, n_out: int, *, hidden: int, logits: bool = False):
    """A tiny Keras model for ``task``; ``logits=True`` leaves the last layer linear."""
    import keras
    from keras import layers

    inputs = keras.Input((N_FEATURES,))
    x = layers.Dense(hidden, activation="tanh")(inputs) if hidden else inputs
    if task == "regression":
        model = keras.Model(inputs, layers.Dense(1)(x))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        return model
    if task in ("binary", "multilabel"):
        units = 1 if task == "binary" else n_out
        act = None if logits else "sigmoid"
        loss = keras.losses.BinaryCrossentropy(from_logits=logits)
    else:
        units, act = n_out, (None if logits else "softmax")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    model = keras.Model(inputs, layers.Dense(units, activation=act)(x))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    return model


def make_project(root: Path, task: str) -> Project:
    """Data (train, test, and disjoint 'external' rows) plus two fold-model directories
    and one external model, with a config that stacks all three."""
    from stacking import load_config, load_dataset, make_fold_plan, train_fold_models

    root.mkdir(parents=True, exist_ok=True)
    frame, target = _frame(task, 360, seed=7)
    train, test, external = frame.iloc[:200], frame.iloc[200:260], frame.iloc[260:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=target).to_parquet(root / "test.parquet", index=False)
    raw = {
        "name": f"tiny-{task}",
        "data": {
            "train": "train.csv",
            "test": "test.parquet",
            "id": "id",
            "target": target,
            "task": task,
            "views": {"x": {"columns": "f_*"}},
        },
        "folds": {
            # Regression takes the default (auto: kfold for a continuous target).
            **({"kind": "kfold"} if task == "multilabel" else {}),
            "n_splits": N_SPLITS,
            "seed": 0,
        },
        "base_models": {
            "wide": {"path": "models/wide", "input": "x"},
            "logit": {"path": "models/logit", "input": "x"},
            "outside": {"path": "models/outside.keras", "input": "x", "trained_on": "external"},
        },
        "metrics": [],
        "meta": {"candidates": ["default"], "bootstrap": 200},
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config_path)
    data = load_dataset(cfg.data)
    plan = make_fold_plan(cfg.folds, data)
    x = data.train[[f"f_{i}" for i in range(N_FEATURES)]].to_numpy("float32")
    n_out = data.n_outputs
    fit = {"epochs": 8, "batch_size": 64}  # tiny models; the tests need signal, not polish
    train_fold_models(
        lambda: build_model(task, n_out, hidden=16),
        x,
        data.y,
        plan,
        root / "models/wide",
        task=task,
        classes=data.classes,
        fit_kwargs=fit,
    )
    train_fold_models(
        lambda: build_model(task, n_out, hidden=0, logits=True),
        x,
        data.y,
        plan,
        root / "models/logit",
        task=task,
        classes=data.classes,
        fit_kwargs=fit,
    )
    # The external model trains on rows that are neither train nor test rows.
    ext = external.copy()
    ext_x = ext[[f"f_{i}" for i in range(N_FEATURES)]].to_numpy("float32")
    if task == "multilabel":
        ext_y = ext[target].to_numpy()
    elif task == "regression":
        ext_y = ext["y"].to_numpy()
    else:
        ext_y = pd.Categorical(ext["y"], categories=data.classes).codes
    model = build_model(task, n_out, hidden=8)
    model.fit(ext_x, ext_y, verbose=0, **fit)
    model.save(root / "models/outside.keras")
    return Project(task=task, root=root, config_path=config_path, raw=load_raw(config_path))


def load_raw(path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    raw["data"]["train"] = str(path.parent / raw["data"]["train"])
    raw["data"]["test"] = str(path.parent / raw["data"]["test"])
    for spec in raw["base_models"].values():
        spec["path"] = str(path.parent / spec["path"])
    return raw


@pytest.fixture(scope="session", autouse=True)
def _session_in_tmp_path(tmp_path_factory):
    """Module- and session-scoped fixtures run before each test's own folder is entered:
    they start from a folder of the session, so a run they make (MLflow's ./mlruns) never
    lands in the checkout."""
    before = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("session-cwd"))
    yield
    os.chdir(before)


def freeze_heap_with_tensorflow() -> None:
    """Import TensorFlow and Keras, then freeze the heap (see ``_frozen_heap``): session
    fixtures that train models are set up before any module's ``_frozen_heap``, and
    TensorFlow is imported by their first model, so its objects would otherwise be walked
    by every collection during their training."""
    import gc

    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    gc.collect()
    gc.freeze()


@pytest.fixture(scope="module", autouse=True)
def _frozen_heap():
    """Each module starts with the heap it inherits frozen (:func:`gc.freeze`).

    A full garbage collection walks every object: after TensorFlow, MLflow and earlier
    modules are imported, over a million, ~0.3 s of CPU each time. The product collects at
    the start of every inference run and after every model (``releasing_models``),
    TensorFlow at every TFLite conversion, and Python's own schedule whenever enough
    objects survive: in a single test process that was a third of the parity tests' CPU.
    Frozen, those collections walk only what the module allocated. The previous module's
    fixtures are torn down before this one starts, so its garbage is collected here, not
    frozen; what is frozen (imports, session fixtures, caches) lives for the session.
    """
    import gc

    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path, monkeypatch):
    """Run every test from its own folder: MLflow's artifact root (./mlruns), the default
    results folder (./runs) and cache land there, never in the checkout."""
    monkeypatch.chdir(tmp_path)


TASKS = ("binary", "multiclass", "multilabel", "regression")
_PROJECT_FIXTURES = {"project_factory", *(f"{task}_project" for task in TASKS)}


# Files by their measured length, longest first (then the rest, each under ~10 s): with
# `pytest -n 2 --dist loadfile --no-loadscope-reorder` (the Makefile) xdist hands out files
# in this order, so the two workers end together instead of one idling while the other
# runs a long file handed out last.
_LONG_FILES = (
    "test_meta_keras.py",  # ~95 s on a busy machine
    "test_demo.py",
    "test_kaggle.py",  # ~55 s on a busy machine
    "test_faults.py",
    "test_cli.py",
    "test_mixed.py",
    "test_onnx.py",
    "test_executors_conformance.py",
    "test_remote_tracking.py",
    "test_notebooks.py",
    "test_experiment.py",
    "test_stack.py",
    "test_images.py",
    "test_docs.py",  # ~30 s: docs/training.md trains six tiny fold models and stacks them
    "test_parity.py",  # ~22 s of CPU: seven fold sets in four formats (a test-fast file)
    "test_bad_inputs.py",
    "test_base_formats.py",
    "test_ray_cluster.py",
    "test_text.py",
    "test_submission.py",
    "test_stacking_levels.py",
    "test_serving.py",
    "test_base.py",  # ~11 s
)


def pytest_collection_modifyitems(config, items):
    """A test that needs a trained project runs whole experiments: mark it ``e2e``.
    The longest files go first (the order is the same in every xdist worker)."""
    for item in items:
        if _PROJECT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    rank = {name: i for i, name in enumerate(_LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the rest


@pytest.fixture(scope="session")
def projects(tmp_path_factory) -> dict[str, Project]:
    """The session's four shared projects, trained up front by the first test that needs
    one, so that a training failure is reported as this fixture's error, not a test's.

    Under pytest-xdist the workers share one build in the session's common temporary
    folder, a lock per project: each worker trains the projects no other worker is
    training, then waits for the rest.
    """
    freeze_heap_with_tensorflow()
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this session
    root = root / "shared-projects"
    root.mkdir(exist_ok=True)
    built: dict[str, Project] = {}
    for blocking in (False, True):  # first the free ones, then wait for the others
        for task in TASKS:
            if task in built:
                continue
            lock = FileLock(root / f"{task}.lock", blocking=blocking)
            try:
                with lock:
                    built[task] = _shared_project(root / task, task)
            except Timeout:  # another worker is training it
                continue
    return {task: built[task] for task in TASKS}


def _shared_project(root: Path, task: str) -> Project:
    """The project in ``root``: read if a worker finished it, else (re)trained here."""
    done = root / "built"
    if done.is_file():
        return Project(task, root, root / "config.yaml", load_raw(root / "config.yaml"))
    shutil.rmtree(root, ignore_errors=True)  # a half-built one
    try:
        project = make_project(root, task)
    except Exception as exc:  # name the project; pytest shows the cause below
        raise RuntimeError(f"building the shared {task} project failed: {exc}") from exc
    done.touch()
    return project


@pytest.fixture(scope="session")
def project_factory(projects):
    """``project_factory(task)``: the session's shared project for that task."""
    return projects.__getitem__


@pytest.fixture(scope="session")
def binary_project(projects) -> Project:
    return projects["binary"]


@pytest.fixture(scope="session")
def multiclass_project(projects) -> Project:
    return projects["multiclass"]


@pytest.fixture(scope="session")
def multilabel_project(projects) -> Project:
    return projects["multilabel"]


@pytest.fixture(scope="session")
def regression_project(projects) -> Project:
    return projects["regression"]


# The changes of the session's reference run: the built-in kinds' results that a kind
# registered by a test (tests/test_plugin_*.py) must reproduce.
UNTRACKED = {
    "tracking.enabled": False,
    "meta.candidates": ["logistic", "mean"],
    "meta.bootstrap": 0,
}


@pytest.fixture(scope="session")
def untracked_run(multiclass_project, tmp_path_factory) -> Path:
    """The results folder of a multiclass run with the default executor and cache that
    recorded nothing (``tracking.enabled: false``); shared, so copy it before changing it."""
    from stacking import Experiment

    tmp = tmp_path_factory.mktemp("untracked")
    cfg = multiclass_project.config(tmp, **UNTRACKED)
    result = Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    assert result.run_id is None
    return tmp / "out"


# --- Model zoo: every model kind in every format that can hold it (tests/test_base_formats.py,
# tests/test_loaders_conformance.py). Built once per session, tiny, saved under tmp.

ZOO_LAYERS = '''
"""Custom classes of the zoo's subclassed models, imported through `custom_objects`."""
import keras


@keras.saving.register_keras_serializable(package="zoo")
class TinySub(keras.Model):
    """Subclassed model: one input, or a list of inputs (concatenated); one output, or a
    dict {"score", "aux"} when ``two_outputs``."""

    def __init__(self, two_outputs=False, **kwargs):
        super().__init__(**kwargs)
        self.two_outputs = two_outputs
        self.hidden = keras.layers.Dense(3, activation="tanh")
        self.score = keras.layers.Dense(2)
        self.aux = keras.layers.Dense(1)

    def build(self, input_shape):
        width = sum(s[-1] for s in input_shape) if isinstance(input_shape[0], (list, tuple)) \\
            else input_shape[-1]
        self.hidden.build((None, width))
        self.score.build((None, 3))
        self.aux.build((None, 3))

    def call(self, inputs):
        x = keras.ops.concatenate(inputs, axis=-1) if isinstance(inputs, (list, tuple)) else inputs
        h = self.hidden(x)
        return {"score": self.score(h), "aux": self.aux(h)} if self.two_outputs else self.score(h)

    def get_config(self):
        return {**super().get_config(), "two_outputs": self.two_outputs}
'''

ZOO_FORMATS = ("keras", "h5", "savedmodel", "tflite")


@dataclass
class ZooModel:
    """One in-memory model, its inputs in declared order and its files by format."""

    name: str
    kind: str  # sequential | functional | subclassed
    variant: str  # single | multi_input | multi_output
    model: object
    inputs: list[np.ndarray]
    paths: dict[str, Path]

    def expected(self) -> list[np.ndarray]:
        """The direct call's outputs, flattened in Keras order (dict outputs by key)."""
        import keras

        x = self.inputs if len(self.inputs) > 1 else self.inputs[0]
        return [np.asarray(t) for t in keras.tree.flatten(self.model(x, training=False))]


def _zoo_models(layers_module):
    import keras
    from keras import layers

    def dense_stack(x, units=2):
        return layers.Dense(units, name="score")(layers.Dense(3, "tanh", name="hidden")(x))

    x4 = keras.Input((4,), name="x")
    # Same shapes, names that sort against their declared order: a swap changes numbers.
    zeta, alpha = keras.Input((3,), name="zeta"), keras.Input((3,), name="alpha")
    h = layers.Dense(3, "tanh", name="hidden")(x4)
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, "tanh")], name="encoder")
    models = {
        "sequential-single": keras.Sequential(
            [keras.Input((4,)), layers.Dense(3, "tanh", name="hidden"), layers.Dense(2)]
        ),
        "functional-single": keras.Model(x4, dense_stack(x4)),
        "functional-multi_input": keras.Model(
            [zeta, alpha], dense_stack(layers.Concatenate()([zeta, alpha]))
        ),
        "functional-multi_output": keras.Model(
            x4, [layers.Dense(2, name="score")(h), layers.Dense(1, name="aux")(h)]
        ),
        "functional-nested": keras.Model(x4, layers.Dense(2, name="score")(inner(x4))),
        "subclassed-single": layers_module.TinySub(),
        "subclassed-multi_input": layers_module.TinySub(),
        "subclassed-multi_output": layers_module.TinySub(two_outputs=True),
    }
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)).astype("float32")
    two = [rng.normal(size=(20, 3)).astype("float32"), rng.normal(size=(20, 3)).astype("float32")]
    for name, model in models.items():
        inputs = two if name.endswith("multi_input") else [x]
        model(inputs if len(inputs) > 1 else inputs[0])  # builds subclassed models
        yield name, model, inputs


def _save_zoo(name, model, directory: Path) -> dict[str, Path]:
    import tensorflow as tf

    kind = name.split("-")[0]
    paths = {"keras": directory / f"{name}.keras"}
    model.save(paths["keras"])
    if kind != "subclassed":  # HDF5 stores only graph (Sequential/Functional) models
        paths["h5"] = directory / f"{name}.h5"
        model.save(paths["h5"])
    paths["savedmodel"] = directory / name
    model.export(paths["savedmodel"], verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(paths["savedmodel"]))
    paths["tflite"] = directory / f"{name}.tflite"
    paths["tflite"].write_bytes(converter.convert())
    if name in ONNX_ZOO:
        paths["onnx"] = directory / f"{name}.onnx"
        write_onnx_mlp(model, paths["onnx"])
    return paths


# The zoo's graph models that ONNX holds here: written from their Keras weights as ONNX
# graphs (MatMul/Add/Tanh/Concat), run by ONNX Runtime and compared with the Keras call.
ONNX_ZOO = (
    "sequential-single",
    "functional-single",
    "functional-multi_input",
    "functional-multi_output",
)


def write_onnx_mlp(model, path: Path) -> Path:
    """Write a Keras model made of Dense (linear/tanh/softmax) and Concatenate layers as an
    ONNX graph with the same input names, input order, output names and weights."""
    from onnx import TensorProto, checker, helper, numpy_helper, save

    nodes, inits, names = [], [], {}
    inputs = [
        helper.make_tensor_value_info(t.name, TensorProto.FLOAT, ["N", t.shape[-1]])
        for t in model.inputs
    ]
    for t in model.inputs:
        names[id(t)] = t.name
    acts = {"tanh": "Tanh", "softmax": "Softmax", "sigmoid": "Sigmoid"}
    previous = model.inputs[0].name
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        node = layer._inbound_nodes[0] if layer._inbound_nodes else None
        ins = [names.get(id(t), previous) for t in node.input_tensors] if node else [previous]
        out = layer.name
        if kind == "Concatenate":
            nodes.append(helper.make_node("Concat", ins, [out], axis=1))
        elif kind == "Dense":
            w, b = layer.get_weights()
            inits += [
                numpy_helper.from_array(w, f"{out}/w"),
                numpy_helper.from_array(b, f"{out}/b"),
            ]
            nodes.append(helper.make_node("MatMul", [ins[0], f"{out}/w"], [f"{out}/mm"]))
            act = layer.get_config()["activation"]
            pre = out if act == "linear" else f"{out}/pre"
            nodes.append(helper.make_node("Add", [f"{out}/mm", f"{out}/b"], [pre]))
            if act != "linear":
                nodes.append(helper.make_node(acts[act], [pre], [out]))
        else:
            raise TypeError(f"write_onnx_mlp does not write {kind} layers")
        if node:
            for t in node.output_tensors:
                names[id(t)] = out
        previous = out
    outputs = [names.get(id(t), previous) for t in model.outputs]
    output_names = [model.layers[-1].name] if len(outputs) == 1 else list(model.output_names)
    for name, source in zip(output_names, outputs):
        if name != source:
            nodes.append(helper.make_node("Identity", [source], [name]))
    graph = helper.make_graph(
        nodes,
        "zoo",
        inputs,
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", t.shape[-1]])
            for n, t in zip(output_names, model.outputs)
        ],
        initializer=inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 9
    checker.check_model(onnx_model)
    save(onnx_model, str(path))
    return path


@pytest.fixture(scope="session")
def model_zoo(tmp_path_factory) -> dict[str, ZooModel]:
    """Every {Sequential, Functional, nested, subclassed} x {single, multi-input,
    multi-output} model a Keras kind can be, saved in every format that holds it. The
    subclassed models' classes live in the module ``zoo_layers`` (on sys.path)."""
    import importlib
    import sys

    freeze_heap_with_tensorflow()
    root = tmp_path_factory.mktemp("zoo")
    (root / "zoo_layers.py").write_text(ZOO_LAYERS)
    sys.path.insert(0, str(root))
    layers_module = importlib.import_module("zoo_layers")
    zoo = {}
    for name, model, inputs in _zoo_models(layers_module):
        kind, variant = name.split("-")
        zoo[name] = ZooModel(name, kind, variant, model, inputs, _save_zoo(name, model, root))
    return zoo


@pytest.fixture(scope="session")
def executor_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny saved Keras and ONNX models for the executor contract (and an unreadable one)."""
    import keras

    def save(path: Path, units: int, seed: int) -> Path:
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(units, activation="tanh")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
        if path.suffix == ".onnx":  # the same kind of network, run by ONNX Runtime
            return write_onnx_mlp(model, path)
        model.save(path)
        return path

    root = tmp_path_factory.mktemp("executor_models")
    broken = root / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    return {
        "a": save(root / "a.keras", 8, 0),
        "b": save(root / "b.keras", 5, 1),
        "o": save(root / "o.onnx", 6, 2),
        "x": broken,
    }


def assert_same_results(got: Path, expected: Path) -> None:
    """Two results folders hold the same predictions and scores (a kind registered by a
    test against the built-in kinds' :func:`untracked_run`)."""
    import json

    for table in ("oof.parquet", "meta_oof.parquet", "test_predictions.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(got / table), pd.read_parquet(expected / table), obj=table
        )
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (got, expected))
    assert a["ensemble"] == b["ensemble"]
    assert a["entries"] == b["entries"]
