"""The stacked-overfitting guard (``folds.holdout`` + ``meta.guard``) on real models.

One project per module, no TensorFlow: 600 rows of a binary target that depends on
``x0`` and ``x1`` only, a plan exported by ``stacking folds`` with 40 % of the rows
reserved, and prediction files of real models trained on that exported plan:

* honest stack: a logistic regression on ``x0`` and one on ``x1`` (each sees half the
  signal, so a meta-model that combines them is truly better than either);
* leaky stack: a logistic regression on ``x0, x1`` and eight LightGBM models on pure-noise
  columns that early-stop on their own held-out fold (the common mistake), so their OOF
  predictions look informative and the meta-model trusts them.

Every model predicts the reserved rows as the mean of its fold models, as test rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from stacking import Experiment
from stacking.cli import main
from stacking.errors import DataError, LeakageError
from stacking.folds import RESERVED, FoldPlan, make_fold_plan
from stacking.guard import FAIL, PASS, REFERENCE
from stacking.predictor import load_predictor

N_ROWS, N_NOISE = 600, 8
CLASSES = ["no", "yes"]
LGBM = {
    "objective": "binary",
    "learning_rate": 0.3,
    "num_leaves": 4,
    "min_data_in_leaf": 3,
    "bagging_fraction": 0.5,
    "bagging_freq": 1,
    "feature_fraction": 0.5,
    "num_threads": 1,
    "verbose": -1,
}


@dataclass
class GuardProject:
    root: Path
    raw: dict
    plan: pd.DataFrame

    def config(self, members: list[str], **meta) -> Path:
        raw = yaml.safe_load(yaml.safe_dump(self.raw))
        raw["base_models"] = {m: raw["base_models"][m] for m in members}
        raw["meta"].update(meta)
        path = self.root / f"config-{'-'.join(members)}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path


def _fit_on_plan(fit_predict, X, y, folds) -> np.ndarray:
    """OOF probabilities of the positive class: fold k from the model of fold k; the
    reserved rows (fold -1) from the mean of every fold model, as test rows."""
    n_splits = int(folds.max()) + 1
    reserved = folds == RESERVED
    oof = np.zeros(len(X))
    for k in range(n_splits):
        fit, held = (folds != k) & ~reserved, folds == k
        on_held, on_reserved = fit_predict(X[fit], y[fit], X[held], y[held], X[reserved])
        oof[held] = on_held
        oof[reserved] += on_reserved / n_splits
    return oof


def _logistic(X, y, X_held, y_held, X_reserved):
    model = LogisticRegression().fit(X, y)
    return model.predict_proba(X_held)[:, 1], model.predict_proba(X_reserved)[:, 1]


def _early_stopped_on_own_fold(seed: int):
    """LightGBM that picks its number of rounds on the fold it then predicts (the leak)."""

    def fit_predict(X, y, X_held, y_held, X_reserved):
        train = lgb.Dataset(X, y)
        valid = lgb.Dataset(X_held, y_held, reference=train)
        booster = lgb.train(
            {**LGBM, "seed": seed},
            train,
            num_boost_round=150,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(150, verbose=False)],
        )
        best = booster.best_iteration
        return booster.predict(X_held, num_iteration=best), booster.predict(
            X_reserved, num_iteration=best
        )

    return fit_predict


def _write_oof(root: Path, name: str, plan: pd.DataFrame, positive: np.ndarray) -> dict:
    frame = pd.DataFrame({"id": plan["id"], "fold": plan["fold"]})
    frame["no"], frame["yes"] = 1.0 - positive, positive
    path = root / "preds" / f"{name}_oof.csv"
    frame.to_csv(path, index=False)
    return {"predictions": {"oof": str(path)}}


@pytest.fixture(scope="module")
def guard_project(tmp_path_factory) -> GuardProject:
    root = tmp_path_factory.mktemp("guard")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 2 + 2 * N_NOISE))
    logit = 1.0 * X[:, 0] - 0.7 * X[:, 1]
    y = (rng.random(N_ROWS) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame.insert(0, "id", [f"r{i:04d}" for i in range(N_ROWS)])
    frame["y"] = np.array(CLASSES)[y]
    frame.to_csv(root / "train.csv", index=False)
    (root / "preds").mkdir()
    raw = {
        "name": "guard",
        "data": {"train": "train.csv", "id": "id", "target": "y"},
        "folds": {"kind": "stratified", "n_splits": 5, "seed": 0, "holdout": 0.4},
        "base_models": {},
        "meta": {"candidates": ["logistic"], "bootstrap": 0, "guard": True},
        "metrics": ["log_loss", "roc_auc"],
        "tracking": {"kind": "none"},
        "cache": {"dir": str(root / "cache")},
        "plots": False,
    }
    (root / "folds.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    # The plan exported before any model exists; every model below is trained on it.
    assert main(["folds", str(root / "folds.yaml"), "--output", str(root / "folds.csv")]) == 0
    plan = pd.read_csv(root / "folds.csv", dtype={"id": str})
    rows = frame.set_index("id").loc[plan["id"]]
    Xp, yp = rows.filter(like="x").to_numpy(), (rows["y"] == "yes").to_numpy(int)
    folds = plan["fold"].to_numpy()
    members = {
        "lr_x0": _fit_on_plan(_logistic, Xp[:, [0]], yp, folds),
        "lr_x1": _fit_on_plan(_logistic, Xp[:, [1]], yp, folds),
        "lr_both": _fit_on_plan(_logistic, Xp[:, :2], yp, folds),
    }
    for i in range(N_NOISE):
        noise = Xp[:, [2 + 2 * i, 3 + 2 * i]]
        members[f"leaky_{i}"] = _fit_on_plan(_early_stopped_on_own_fold(i), noise, yp, folds)
    raw["base_models"] = {name: _write_oof(root, name, plan, p) for name, p in members.items()}
    return GuardProject(root=root, raw=raw, plan=plan)


LEAKY = ["lr_both", *(f"leaky_{i}" for i in range(N_NOISE))]
HONEST = ["lr_x0", "lr_x1"]


def _row(board: pd.DataFrame, model: str) -> pd.Series:
    return board.set_index("model").loc[model]


@pytest.mark.e2e
def test_guard_refuses_a_meta_model_fooled_by_early_stopping_on_the_own_fold(
    guard_project, tmp_path
):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    config = guard_project.config(LEAKY)
    result = Experiment.from_yaml(
        config, overrides=["tracking.kind=mlflow", f"tracking.uri={store}"], progress=False
    ).run()
    board = result.leaderboard
    meta, honest = _row(board, "logistic"), _row(board, "lr_both")
    # Cross-validated on the stacking rows the meta-model looks clearly better ...
    assert meta["cv_log_loss"] < honest["cv_log_loss"] - 0.01
    # ... and on the reserved rows it is worse than the honest base model alone.
    assert meta["guard_log_loss"] > honest["guard_log_loss"] + 0.005
    assert meta["guard"] == FAIL and honest["guard"] == REFERENCE
    assert (
        result.ensemble == "lr_both" and board.loc[board["selected"], "model"].item() == "lr_both"
    )
    assert result.meta_model is None
    guard = result.metrics["guard"]
    assert guard["passed"] is False and guard["selected"] == "logistic"
    assert "falls back to lr_both" in guard["message"]
    assert guard["message"] in result.summary()
    # The run record says so too, and the results folder holds the same.
    run = mlflow.MlflowClient(store).get_run(result.run_id)
    assert run.data.tags["stacking.guard"] == FAIL
    assert run.data.tags["stacking.guard_reason"] == guard["message"]
    assert run.data.tags["stacking.ensemble"] == "lr_both"
    on_disk = pd.read_csv(result.output_dir / "leaderboard.csv").set_index("model")
    assert on_disk.loc["logistic", "guard"] == FAIL
    # The served ensemble is the fallback: rows carrying every member's columns get
    # lr_both's own probabilities, not the meta-model's.
    predictor = load_predictor(result.output_dir)
    rows = pd.DataFrame({"id": ["n0", "n1", "n2"]})
    given = {m: np.array([0.2, 0.55, 0.9]) + 0.01 * i for i, m in enumerate(LEAKY)}
    for member, columns in predictor.stack.given_columns().items():
        for column in columns:
            yes = given[member]
            rows[column] = yes if column.endswith("yes") else 1.0 - yes
    served = predictor.predict_proba(rows)
    np.testing.assert_allclose(served[:, 1], given["lr_both"], rtol=1e-12)


def test_guard_keeps_a_meta_model_of_honest_base_models(guard_project):
    result = Experiment.from_yaml(guard_project.config(HONEST), progress=False).run()
    board = result.leaderboard
    meta = _row(board, "logistic")
    best_base = min(_row(board, m)["guard_log_loss"] for m in HONEST)
    assert meta["guard_log_loss"] < best_base - 0.02  # truly better on fresh rows
    assert meta["guard"] == PASS
    assert result.ensemble == "logistic" and result.metrics["guard"]["passed"] is True
    assert result.meta_model is not None


def test_guard_scores_equal_a_recomputation_from_the_reserved_rows(guard_project):
    """``guard_log_loss`` is the log loss of ``guard.parquet``'s predictions of the
    reserved rows, and those are exactly the rows the exported plan marks -1."""
    result = Experiment.from_yaml(guard_project.config(HONEST), progress=False).run()
    held = pd.read_parquet(result.output_dir / "guard.parquet")
    plan = guard_project.plan
    assert sorted(held["id"]) == sorted(plan.loc[plan["fold"] == RESERVED, "id"])
    truth = (held["y"] == "yes").to_numpy(int)
    board = result.leaderboard.set_index("model")
    for model in [*HONEST, "base_mean", "logistic"]:
        recomputed = log_loss(truth, held[[f"{model}__no", f"{model}__yes"]].to_numpy())
        assert board.loc[model, "guard_log_loss"] == pytest.approx(recomputed, rel=1e-12)
    # The stacking rows alone are in oof.parquet; folds.csv is the whole exported plan.
    oof = pd.read_parquet(result.output_dir / "oof.parquet")
    assert len(oof) == len(plan) - len(held) and (oof["fold"] >= 0).all()
    written = pd.read_csv(result.output_dir / "folds.csv", dtype={"id": str})
    pd.testing.assert_frame_equal(written, plan)
    exported = FoldPlan.from_csv(guard_project.root / "folds.csv")
    assert exported.n_reserved == len(held)
    assert result.metrics["folds_digest"] == exported.digest


def test_guard_off_reports_the_reserved_scores_without_changing_the_choice(guard_project):
    result = Experiment.from_yaml(guard_project.config(LEAKY, guard=False), progress=False).run()
    assert result.ensemble == "logistic"
    assert _row(result.leaderboard, "logistic")["guard"] == FAIL
    assert "kept, as meta.guard is off" in result.metrics["guard"]["message"]


def test_a_prediction_file_that_trained_on_a_reserved_row_is_refused(guard_project, tmp_path):
    """The OOF file's folds must equal the plan on the reserved rows too."""
    frame = pd.read_csv(guard_project.root / "preds" / "lr_x0_oof.csv", dtype={"id": str})
    first = frame.index[frame["fold"] == RESERVED][0]
    frame.loc[first, "fold"] = 0  # a reserved row predicted as if in fold 0
    frame.to_csv(tmp_path / "bad_oof.csv", index=False)
    raw = yaml.safe_load(guard_project.config(HONEST).read_text())
    raw["base_models"]["lr_x0"]["predictions"]["oof"] = str(tmp_path / "bad_oof.csv")
    raw["data"]["train"] = str(guard_project.root / "train.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(LeakageError, match=r"1 row\(s\) were predicted in another fold .*plan -1"):
        Experiment.from_yaml(tmp_path / "c.yaml", progress=False).run()


# -- the reserved rows in the fold plan -----------------------------------------------------


def _data(tmp_path, n: int = 120):
    from stacking.config import DataConfig
    from stacking.data import load_dataset

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "sample": [f"s{i:03d}" for i in range(n)],
            "x": rng.normal(size=n),
            "label": np.repeat([0, 0, 0, 0, 1, 2], n // 6),  # 2/3, 1/6, 1/6
            "patient": rng.permutation(np.arange(n) // 4),
        }
    )
    frame.to_csv(tmp_path / "train.csv", index=False)
    return load_dataset(DataConfig(train=tmp_path / "train.csv", target="label", id="sample"))


def test_holdout_is_stratified_and_no_fold_model_trains_on_it(tmp_path):
    from stacking.config import FoldsConfig
    from stacking.training import _models_to_fit

    data = _data(tmp_path)
    plan = make_fold_plan(FoldsConfig(kind="stratified", n_splits=4, holdout=0.25), data)
    assert_array_equal(np.bincount(data.y[plan.reserved]), [20, 5, 5])  # a quarter of each
    for rows, name in _models_to_fit(plan, train_full=True):
        assert not plan.reserved[rows].any(), name
    tested = np.concatenate([plan.test_index(k) for k in range(plan.n_splits)])
    assert_array_equal(np.sort(tested), np.flatnonzero(~plan.reserved))
    # the seed chooses them; the same seed the same rows
    again = make_fold_plan(FoldsConfig(kind="stratified", n_splits=4, holdout=0.25), data)
    other = make_fold_plan(FoldsConfig(kind="stratified", n_splits=4, holdout=0.25, seed=1), data)
    assert_array_equal(again.folds, plan.folds)
    assert not np.array_equal(other.reserved, plan.reserved)


def test_holdout_never_splits_a_group(tmp_path):
    from stacking.config import FoldsConfig

    data = _data(tmp_path)
    groups = data.train["patient"].to_numpy()
    plan = make_fold_plan(FoldsConfig(kind="group", group="patient", n_splits=3, holdout=0.2), data)
    assert plan.n_reserved > 0
    for patient in np.unique(groups):
        assert np.unique(plan.folds[groups == patient]).size == 1, patient
    assert set(groups[plan.reserved]).isdisjoint(groups[~plan.reserved])


def test_holdout_plan_round_trips_and_a_plain_plan_is_unchanged(tmp_path):
    from stacking.config import FoldsConfig
    from stacking.folds import read_fold_file

    data = _data(tmp_path)
    plan = make_fold_plan(FoldsConfig(n_splits=3, holdout=0.2), data)
    plan.save(tmp_path / "folds.csv", id_column="sample")
    back = read_fold_file(tmp_path / "folds.csv", data)
    assert_array_equal(back.folds, plan.folds) and back.digest == plan.digest
    assert FoldPlan.from_csv(tmp_path / "folds.csv").digest == plan.digest
    plain = make_fold_plan(FoldsConfig(n_splits=3), data)
    assert plain.n_reserved == 0 and plain.digest != plan.digest
    plain.save(tmp_path / "plain.csv", id_column="sample")
    assert list(pd.read_csv(tmp_path / "plain.csv").columns) == ["sample", "fold"]
    # the digest of a plan without reserved rows is the sha256 it always was
    lines = sorted(f"{i},{k}" for i, k in zip(plain.ids, plain.folds))
    assert plain.digest == hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@pytest.mark.e2e
def test_fold_models_predict_reserved_rows_as_test_rows_never_the_full_model(
    guard_project, tmp_path
):
    """An ONNX fold set trained on the exported plan (with a ``full`` model): the reserved
    rows' level-1 features are the mean of the fold models, as onnxruntime computes it."""
    import onnxruntime as ort

    from stacking.training import train_onnx_fold_models

    plan = FoldPlan.from_csv(guard_project.root / "folds.csv")
    train = pd.read_csv(guard_project.root / "train.csv", dtype={"id": str}).set_index("id")
    X = train.loc[plan.ids, ["x0", "x1"]].to_numpy(np.float32)
    y = (train.loc[plan.ids, "y"] == "yes").to_numpy(int)
    folder = train_onnx_fold_models(
        LogisticRegression,
        X,
        y,
        plan,
        tmp_path / "onnx",
        task="binary",
        classes=CLASSES,
        train_full=True,
    )

    def proba(name: str, rows: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(folder / f"{name}.onnx"))
        outputs = session.run(None, {"x": rows})
        return np.asarray(
            pd.DataFrame(outputs[1])[1] if isinstance(outputs[1], list) else outputs[1][:, 1]
        )

    raw = yaml.safe_load(guard_project.config(HONEST).read_text())
    raw["data"]["train"] = str(guard_project.root / "train.csv")
    raw["data"]["views"] = {"xy": {"columns": ["x0", "x1"]}}
    raw["base_models"]["onnx"] = {"path": str(folder), "input": "xy"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = Experiment.from_yaml(tmp_path / "c.yaml", progress=False).run()
    held = pd.read_parquet(result.output_dir / "guard.parquet").set_index("id")
    rows = train.loc[held.index, ["x0", "x1"]].to_numpy(np.float32)
    mean = np.mean([proba(f"fold_{k}", rows) for k in range(plan.n_splits)], axis=0)
    np.testing.assert_allclose(held["onnx__yes"], mean, rtol=1e-6)
    assert np.abs(proba("full", rows) - mean).max() > 1e-4  # the full model differs


def test_repeats_and_nested_run_on_the_stacking_rows_only(guard_project):
    """Re-splits and the outer folds of ``meta.nested`` split the stacking rows; the
    reserved rows stay out of both (they have no fold to be re-split into)."""
    config = guard_project.config(HONEST, repeats=2, nested=True)
    result = Experiment.from_yaml(config, progress=False).run()
    n_reserved = int((guard_project.plan["fold"] == RESERVED).sum())
    assert result.metrics["n_rows"] == N_ROWS - n_reserved
    assert result.metrics["n_reserved"] == n_reserved
    board = result.leaderboard.set_index("model")
    assert board["cv_log_loss_repeat_std"].notna().all()
    assert np.isfinite(board.loc["logistic", "cv_log_loss_selected_nested"])
    assert board.loc["logistic", "guard"] == PASS


def test_the_kaggle_lightgbm_script_trains_on_no_reserved_row(tmp_path):
    """``experiments/kaggle/lgbm_oof.py`` on a plan with reserved rows: it writes them with
    fold -1 and the mean of its fold boosters, which never saw them."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "experiments/kaggle/lgbm_oof.py"
    spec = importlib.util.spec_from_file_location("lgbm_oof", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    rng = np.random.default_rng(2)
    n = 90
    train = pd.DataFrame({"id": [f"p{i:03d}" for i in range(n)], "a": rng.normal(size=n)})
    train["b"] = rng.normal(size=n)
    train["diagnosis"] = np.where(train["a"] + rng.normal(size=n) > 0, "M", "B")
    (tmp_path / "data").mkdir()
    train.to_csv(tmp_path / "data/train.csv", index=False)
    train.drop(columns="diagnosis").head(5).to_csv(tmp_path / "data/test.csv", index=False)
    folds = np.array([RESERVED if i % 6 == 0 else i % 3 for i in range(n)])
    pd.DataFrame({"id": train["id"], "fold": folds}).to_csv(tmp_path / "folds.csv", index=False)

    paths = module.train_oof(
        tmp_path / "data", tmp_path / "folds.csv", tmp_path / "preds", n_estimators=10
    )
    oof = pd.read_csv(paths["oof"], dtype={"id": str}).set_index("id").loc[train["id"]]
    assert_array_equal(oof["fold"], folds)
    X, y = train[["a", "b"]], (train["diagnosis"] == "M").to_numpy(int)
    reserved = folds == RESERVED
    expected = np.mean(
        [
            lgb.LGBMClassifier(**{**module.PARAMS, "n_estimators": 10})
            .fit(X[(folds != k) & ~reserved], y[(folds != k) & ~reserved])
            .predict_proba(X[reserved])[:, 1]
            for k in range(3)
        ],
        axis=0,
    )
    np.testing.assert_allclose(oof.loc[reserved, "M"], expected, rtol=1e-9)


def test_guard_on_a_folds_file_needs_reserved_rows_in_it(guard_project, tmp_path):
    plain = guard_project.plan.assign(fold=lambda f: f["fold"].clip(lower=0))
    plain.to_csv(tmp_path / "plain.csv", index=False)
    raw = yaml.safe_load(guard_project.config(HONEST).read_text())
    raw["data"]["train"] = str(guard_project.root / "train.csv")
    raw["folds"] = {"file": str(tmp_path / "plain.csv")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match=r"meta\.guard needs rows the fold plan reserves"):
        Experiment.from_yaml(tmp_path / "c.yaml", progress=False).run()
    # the exported plan itself carries them: the same run on it keeps its verdict
    raw["folds"] = {"file": str(guard_project.root / "folds.csv")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = Experiment.from_yaml(tmp_path / "c.yaml", progress=False).run()
    assert result.metrics["guard"]["passed"] is True
