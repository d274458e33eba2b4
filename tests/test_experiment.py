"""End-to-end runs of the Experiment on every task type, with real saved Keras models."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from stacking import Experiment, LeakageError, load_config
from stacking.errors import BaseModelError, DataError
from stacking.metrics import get_metric

TASKS = ["binary", "multiclass", "multilabel", "regression"]
RESULT_FILES = {
    "oof.parquet",
    "meta_oof.parquet",
    "test_predictions.parquet",
    "leaderboard.csv",
    "weights.csv",
    "folds.csv",
    "config.resolved.yaml",
    "metrics.json",
    "ensemble",
    "plots",
    "diversity.csv",  # three base models: always a pair
}
# Reliability tables where the ``ece`` metric applies.
PER_TASK_FILES = {"binary": {"calibration.csv"}, "multiclass": {"calibration.csv"}}
PER_TASK_PLOTS = {
    "binary": {"confusion.png", "calibration.png", "reliability.png"},
    "multiclass": {"confusion.png", "calibration.png", "reliability.png"},
    "multilabel": {"confusion.png", "calibration.png"},
    "regression": {"residuals.png"},
}


@pytest.mark.parametrize("task", TASKS)
def test_experiment_runs_each_task_end_to_end(project_factory, tmp_path, task):
    project = project_factory(task)
    result = Experiment.from_yaml(
        project.config(tmp_path, plots=True), output_dir=tmp_path / "out", progress=False
    ).run()

    files = RESULT_FILES | PER_TASK_FILES.get(task, set())
    assert {p.name for p in result.output_dir.iterdir()} == files
    plots = {p.name for p in (result.output_dir / "plots").glob("*.png")}
    assert {"leaderboard.png", "correlation.png"} | PER_TASK_PLOTS[task] <= plots
    board = result.leaderboard
    assert set(board.model) == {"wide", "logit", "outside", "base_mean", result.ensemble}
    assert board.selected.sum() == 1
    primary = result.metrics["primary_metric"]
    scores = board[f"cv_{primary}"]
    metric = get_metric(primary)
    assert list(scores) == sorted(scores, reverse=metric.greater_is_better)
    # oof.parquet: id, fold, target column(s), then <model>__<output> features.
    oof = pd.read_parquet(result.output_dir / "oof.parquet")
    targets = ["a", "b", "c"] if task == "multilabel" else ["y"]
    assert list(oof.columns[: 2 + len(targets)]) == ["id", "fold", *targets]
    features = list(oof.columns[2 + len(targets) :])
    if task == "binary":
        assert features == ["wide__yes", "logit__yes", "outside__yes"]
    elif task == "regression":
        assert features == ["wide__pred", "logit__pred", "outside__pred"]
    test = pd.read_parquet(result.output_dir / "test_predictions.parquet")
    assert len(test) == 60 and test["prediction"].notna().all()


def test_experiment_ensemble_score_matches_independent_recomputation(multiclass_project, tmp_path):
    """Refit the meta-model per fold from oof.parquet + folds.csv with scikit-learn only."""
    result = Experiment.from_yaml(
        multiclass_project.config(tmp_path), output_dir=tmp_path / "out", progress=False
    ).run()
    oof = pd.read_parquet(tmp_path / "out" / "oof.parquet")
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert folds["id"].tolist() == oof["id"].tolist()
    X = oof.filter(like="__").to_numpy()
    classes = sorted(oof["y"].unique())
    y = oof["y"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    # The "default" candidate of a classification task: the level-1 columns standardised,
    # then LogisticRegression(max_iter=1000).
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.zeros((len(y), len(classes)))
    for k in sorted(folds["fold"].unique()):
        test = folds["fold"].to_numpy() == k
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(X[~test], y[~test])
        assert model.classes_.tolist() == list(range(len(classes)))
        pred[test] = model.predict_proba(X[test])
    from sklearn.metrics import log_loss

    expected = log_loss(y, pred)
    row = result.leaderboard.set_index("model").loc["logistic"]
    assert row["cv_log_loss"] == pytest.approx(expected, rel=1e-9)


def test_experiment_oof_rows_come_from_their_fold_model(multiclass_project, tmp_path):
    """No leakage: row i of fold k equals fold model k's own prediction for row i."""
    import keras

    result = Experiment.from_yaml(
        multiclass_project.config(tmp_path, **{"meta.features": "proba"}),
        output_dir=tmp_path / "out",
        progress=False,
    ).run()
    oof = result.oof
    x = oof.merge(pd.read_csv(multiclass_project.root / "train.csv"), on="id")
    x = x[[f"f_{i}" for i in range(6)]].to_numpy("float32")
    for k in range(3):
        model = keras.models.load_model(multiclass_project.root / f"models/wide/fold_{k}.keras")
        rows = oof["fold"].to_numpy() == k
        expected = model(x[rows], training=False).numpy()
        got = oof.loc[rows, ["wide__ant", "wide__bee", "wide__cat"]].to_numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_experiment_second_run_is_served_from_cache(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False})
    first = Experiment.from_yaml(cfg, output_dir=tmp_path / "a", progress=False)
    first.run()
    cache_entries = first.cache.info()["entries"]
    # 2 fold-model dirs x (3 folds OOF + 3 test) + external (train + test) = 14 entries.
    assert cache_entries == 14
    second = Experiment.from_yaml(cfg, output_dir=tmp_path / "b", progress=False)
    ran = []
    second.executor.run = lambda jobs, on_result: ran.extend(jobs)
    second.run()
    assert ran == []
    a = pd.read_parquet(tmp_path / "a" / "oof.parquet")
    b = pd.read_parquet(tmp_path / "b" / "oof.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_experiment_refuses_fold_models_of_another_plan(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"folds.seed": 1})
    with pytest.raises(LeakageError, match=r"'wide' was trained on fold plan .* retrain"):
        Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    assert not (tmp_path / "out").exists()


def test_experiment_refuses_undeclared_single_model(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"base_models.outside.trained_on": None})
    with pytest.raises(LeakageError, match=r"'outside' is a single model .*`trained_on: external`"):
        Experiment.from_yaml(cfg, progress=False).run()


def test_experiment_refuses_view_that_does_not_fit_the_model(multiclass_project, tmp_path):
    cfg = multiclass_project.config(
        tmp_path, **{"data.views": {"x": {"columns": ["f_0", "f_1", "f_2"]}}}
    )
    with pytest.raises(BaseModelError, match=r"'wide' .* expects input shape.*\(6,\).*\(3,\)"):
        Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    assert not (tmp_path / "out").exists()


def test_experiment_refuses_nonempty_output_dir(multiclass_project, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = multiclass_project.config(tmp_path, **{"tracking.enabled": False})
    with pytest.raises(DataError, match="not empty"):
        Experiment.from_yaml(cfg, output_dir=out, progress=False).run()
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_experiment_logs_parent_and_nested_runs_to_mlflow(multiclass_project, tmp_path):
    cfg_path = multiclass_project.config(tmp_path, plots=True)
    result = Experiment.from_yaml(cfg_path, output_dir=tmp_path / "out", progress=False).run()
    cfg = load_config(cfg_path)
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    parent = client.get_run(result.run_id)
    assert parent.data.tags["stacking.data_digest"] == result.metrics["data_digest"]
    assert parent.data.tags["stacking.folds_digest"] == result.metrics["folds_digest"]
    assert parent.data.tags["stacking.direction.log_loss"] == "lower"
    assert parent.data.tags["stacking.direction.accuracy"] == "higher"
    board = result.leaderboard.set_index("model")
    assert parent.data.metrics["cv_log_loss"] == pytest.approx(
        board.loc[result.ensemble, "cv_log_loss"]
    )
    for base in ["wide", "logit", "outside"]:
        assert parent.data.metrics[f"base.{base}.cv_log_loss"] == pytest.approx(
            board.loc[base, "cv_log_loss"]
        )
    experiment_id = parent.info.experiment_id
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    roles = {r.info.run_name: r.data.tags["stacking.role"] for r in children}
    assert roles == {"wide": "base", "logit": "base", "outside": "base", "logistic": "meta"}
    history = client.get_metric_history(children[0].info.run_id, "fold_log_loss")
    assert [m.step for m in history] == [0, 1, 2]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"oof.parquet", "leaderboard.csv", "metrics.json", "plots"} <= artifacts
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["run_id"] == result.run_id
    # The plots are in the results folder and among the run's artifacts.
    pngs = {"leaderboard.png", "correlation.png", "confusion.png", "calibration.png"}
    assert pngs <= {p.name for p in (tmp_path / "out" / "plots").glob("*.png")}
    logged = {a.path.removeprefix("plots/") for a in client.list_artifacts(result.run_id, "plots")}
    assert pngs <= logged


def test_experiment_plots_false_writes_no_plots(multiclass_project, tmp_path):
    cfg = multiclass_project.config(tmp_path, **{"plots": False, "tracking.enabled": False})
    Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    assert (tmp_path / "out" / "oof.parquet").is_file()
    assert not (tmp_path / "out" / "plots").exists()


def test_experiment_joins_the_callers_active_run(multiclass_project, tmp_path):
    cfg_path = multiclass_project.config(tmp_path)
    uri = load_config(cfg_path).tracking.uri
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("mine")
        with mlflow.start_run() as mine:
            result = Experiment.from_yaml(
                cfg_path, output_dir=tmp_path / "out", progress=False
            ).run()
        assert result.run_id == mine.info.run_id
    finally:
        mlflow.set_tracking_uri(None)


def test_labelled_test_table_gives_holdout_scores_equal_to_scikit_learn(
    multiclass_project, tmp_path
):
    """A test table that carries the target is a holdout: every leaderboard row gains
    test_<metric>, recomputed here with scikit-learn on the test rows."""
    from conftest import _frame
    from sklearn.metrics import accuracy_score, log_loss

    frame, _ = _frame("multiclass", 360, seed=7)
    labelled = frame.iloc[200:260]  # the project's test rows, with their labels
    labelled.to_csv(tmp_path / "test_labelled.csv", index=False)
    cfg = multiclass_project.config(
        tmp_path,
        **{
            "data.test": str(tmp_path / "test_labelled.csv"),
            "metrics": ["log_loss", "accuracy"],
            "meta.candidates": ["logistic", "mean"],
            "meta.bootstrap": 0,
        },
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    board = result.leaderboard.set_index("model")
    assert {"test_log_loss", "test_accuracy"} <= set(board.columns)
    y = pd.Categorical(labelled["y"], categories=["ant", "bee", "cat"]).codes
    proba = result.test_predictions[["ensemble__ant", "ensemble__bee", "ensemble__cat"]]
    proba = proba.to_numpy() / proba.to_numpy().sum(axis=1, keepdims=True)  # as metrics does
    ensemble = board.loc[result.ensemble]
    np.testing.assert_allclose(ensemble["test_log_loss"], log_loss(y, proba), rtol=1e-9)
    assert ensemble["test_accuracy"] == accuracy_score(y, proba.argmax(axis=1))
    # Base rows are scored on their own test predictions (the level-1 test features).
    wide = result.test_predictions[["wide__ant", "wide__bee", "wide__cat"]].to_numpy()
    wide = wide / wide.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(board.loc["wide", "test_log_loss"], log_loss(y, wide), rtol=1e-9)
    # The parent MLflow run carries the chosen ensemble's holdout score.
    import mlflow

    from stacking import load_config

    run = mlflow.MlflowClient(load_config(cfg).tracking.uri).get_run(result.run_id)
    assert run.data.metrics["test_log_loss"] == pytest.approx(log_loss(y, proba))


def test_experiment_given_a_path_instead_of_a_config_is_a_typed_error():
    from stacking import ConfigError

    with pytest.raises(ConfigError, match=r"Experiment takes a Config\. Received: str .*from_yaml"):
        Experiment("configs/digits.yaml")
