"""The saved ensemble: results-dir predictor, MLflow pyfunc model, predict and reproduce."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ModelServer, logged_ensemble, sqlite_store

from stacking import Experiment
from stacking.cli import main
from stacking.predictor import load_predictor


@pytest.fixture(scope="module")
def rank_run(multiclass_project, tmp_path_factory):
    """A two-level run with rank features: every part of the recipe is exercised."""
    tmp = tmp_path_factory.mktemp("serving")
    cfg = multiclass_project.config(
        tmp,
        **{
            "meta.features": {"kind": "rank", "passthrough": ["f_0"]},
            "meta.candidates": ["logistic", "mean"],
            "meta.levels": [{"candidates": ["nnls"]}],
            "meta.bootstrap": 0,
        },
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    return result, tmp, cfg


def _ensemble_columns(frame):
    return frame[[c for c in frame.columns if c.startswith("ensemble__")]].to_numpy()


def test_predictor_reproduces_test_predictions(rank_run, multiclass_project):
    result, tmp, _ = rank_run
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    predictor = load_predictor(tmp / "out")
    got = predictor.predict(test)
    np.testing.assert_allclose(
        _ensemble_columns(got), _ensemble_columns(result.test_predictions), atol=1e-10
    )
    assert got["prediction"].tolist() == result.test_predictions["prediction"].tolist()
    # Rank features of a single new row are placed in the training distribution, so a
    # row predicted alone gets the same answer as in a batch.
    alone = predictor.predict(test.iloc[[5]])
    np.testing.assert_allclose(_ensemble_columns(alone), _ensemble_columns(got)[[5]], atol=1e-10)


def test_cli_predict_serves_a_row_alone_as_in_its_batch_when_rank_is_selected(
    rank_run, multiclass_project, tmp_path
):
    """`stacking predict` on one row of a run that selected the rank combiner gives that
    row's answer in the whole table (ranking within the batch gave a lone row 1/3 each)."""
    _, tmp, _ = rank_run
    cfg = multiclass_project.config(
        tmp_path,
        **{
            "meta.candidates": ["rank"],
            "meta.bootstrap": 0,
            "tracking.enabled": False,
            "cache.dir": str(tmp / "cache"),  # the base models' predictions of rank_run
        },
    )
    result = Experiment.from_yaml(cfg, output_dir=tmp_path / "out", progress=False).run()
    assert result.ensemble == "rank"
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    test.iloc[[7]].to_parquet(tmp_path / "one.parquet")
    sources = {"one": tmp_path / "one.parquet", "all": multiclass_project.root / "test.parquet"}
    for rows, source in sources.items():
        args = ["predict", str(tmp_path / "out"), str(source)]
        assert main([*args, "--output", str(tmp_path / f"{rows}.csv")]) == 0
    alone, batch = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "all.csv")
    np.testing.assert_allclose(
        _ensemble_columns(alone), _ensemble_columns(batch)[[7]], rtol=0, atol=1e-12
    )
    assert np.ptp(_ensemble_columns(alone)) > 0.05  # not the uniform answer
    np.testing.assert_allclose(
        _ensemble_columns(batch), _ensemble_columns(result.test_predictions), atol=1e-12
    )


def test_predictor_matches_columns_by_name_not_position(rank_run, multiclass_project):
    """A table with its columns in another order gives identical predictions."""
    result, tmp, _ = rank_run
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    shuffled = test[list(reversed(test.columns))]
    got = load_predictor(tmp / "out").predict(shuffled)
    np.testing.assert_array_equal(
        _ensemble_columns(got), _ensemble_columns(result.test_predictions)
    )


def test_pyfunc_ensemble_model_serves_the_same_predictions(rank_run, multiclass_project):
    result, _tmp, cfg = rank_run
    from stacking import load_config

    uri = load_config(cfg).tracking.uri
    model, model_id = logged_ensemble(uri, result.run_id)
    assert mlflow.MlflowClient(tracking_uri=uri).get_logged_model(model_id).name == "ensemble"
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    got = model.predict(test)
    np.testing.assert_allclose(
        _ensemble_columns(got), _ensemble_columns(result.test_predictions), atol=1e-10
    )


def test_pyfunc_model_with_a_damaged_file_answers_without_server_paths(
    rank_run, multiclass_project, tmp_path
):
    """A fault of the server's own (here a base-model file damaged after loading) is not the
    request's: the answer says the server failed and names none of its paths."""
    from mlflow.exceptions import MlflowException

    from stacking import load_config

    result, _tmp, cfg = rank_run
    uri = load_config(cfg).tracking.uri
    _, model_id = logged_ensemble(uri, result.run_id)
    mlflow.set_tracking_uri(uri)
    try:  # a copy of its own: the logged model stays whole for the other tests
        folder = Path(
            mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(tmp_path))
        )
    finally:
        mlflow.set_tracking_uri(None)
    model = mlflow.pyfunc.load_model(str(folder))
    damaged = sorted(p for p in folder.rglob("*.keras"))[0]
    damaged.write_bytes(b"not a model")
    test = pd.read_parquet(multiclass_project.root / "test.parquet")
    with pytest.raises(MlflowException) as caught:
        model.predict(test)
    message = str(caught.value)
    assert "could not answer this request" in message
    assert str(folder) not in message and damaged.name not in message
    assert "/" not in message, message


def test_cli_predict_writes_file_from_results_dir(rank_run, multiclass_project, tmp_path):
    _, tmp, _ = rank_run
    out = tmp_path / "pred.csv"
    code = main(
        [
            "predict",
            str(tmp / "out"),
            str(multiclass_project.root / "test.parquet"),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "id",
        "ensemble__ant",
        "ensemble__bee",
        "ensemble__cat",
        "prediction",
    ]
    assert len(frame) == 60


def test_cli_predict_missing_input_column_is_a_user_error(rank_run, tmp_path, capsys):
    _, tmp, _ = rank_run
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["x"], "f_0": [0.1]}).to_csv(bad, index=False)
    code = main(["predict", str(tmp / "out"), str(bad), "--output", str(tmp_path / "p.csv")])
    assert code == 2
    # The view's glob 'f_*' was resolved against the training table: new rows are matched
    # by those names, so the missing ones are named (not a shape error on 1 column).
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad} has no column(s) ['f_1', 'f_2', 'f_3', 'f_4', 'f_5']")
    assert err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists()


def test_cli_reproduce_reruns_and_compares(rank_run, tmp_path, capsys):
    result, _tmp, cfg = rank_run
    from stacking import load_config

    uri = load_config(cfg).tracking.uri
    code = main(
        ["reproduce", result.run_id, "--tracking-uri", uri, "--output", str(tmp_path / "again")]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    # the run's three default metrics (log_loss, accuracy, roc_auc), each compared
    recorded = mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).data.metrics
    assert sorted(k for k in recorded if k.startswith("cv_")) == [
        "cv_accuracy",
        "cv_log_loss",
        "cv_roc_auc",
    ]
    assert out.count(" same\n") == 3
    assert out.rstrip().endswith("reproduced: 3 of 3 recorded cv_ metrics equal")
    new_id = out.split("new run: ")[1].split()[0]
    tags = mlflow.MlflowClient(tracking_uri=uri).get_run(new_id).data.tags
    assert tags["stacking.reproduces"] == result.run_id


def _recorded_copy(uri: str, run_id: str, metrics: dict[str, float], tmp_path) -> str:
    """A new run in the store at ``uri`` recording what run ``run_id`` recorded (its tags
    and config), but ``metrics`` as its metrics: a record that a re-run must not match."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    copy = client.create_run(run.info.experiment_id, tags=tags).info.run_id
    for name, value in metrics.items():
        client.log_metric(copy, name, value)
    config = client.download_artifacts(run_id, "config.resolved.yaml", str(tmp_path))
    client.log_artifact(copy, config)
    client.set_terminated(copy)
    return copy


def test_cli_reproduce_of_a_differing_record_exits_3_naming_the_metric(rank_run, tmp_path, capsys):
    result, _tmp, cfg = rank_run
    from stacking import load_config

    uri = load_config(cfg).tracking.uri
    recorded = mlflow.MlflowClient(tracking_uri=uri).get_run(result.run_id).data.metrics
    metrics = {k: v for k, v in recorded.items() if k.startswith("cv_")}
    metrics["cv_accuracy"] += 0.01  # what the ensemble scored is not what a re-run scores
    copy = _recorded_copy(uri, result.run_id, metrics, tmp_path)

    code = main(["reproduce", copy, "--tracking-uri", uri, "--output", str(tmp_path / "again")])
    captured = capsys.readouterr()
    assert code == 3, captured
    ensemble = result.ensemble
    assert f"cv_accuracy of {ensemble}: recorded {metrics['cv_accuracy']:.6f}" in captured.out
    assert [
        line.split()[-1] for line in captured.out.splitlines() if " of " + ensemble + ":" in line
    ] == ["DIFFERS", "same", "same"]
    # stderr carries the re-run's stage lines, then the verdict as its last line.
    assert captured.err.splitlines()[-1] == (
        "not reproduced: cv_accuracy differ (2 of 3 recorded cv_ metrics equal)"
    )
    assert "reproduced:" not in captured.out


def test_cli_reproduce_of_a_run_without_cv_metrics_is_a_user_error(rank_run, tmp_path, capsys):
    """Comparing nothing is not a reproduction: refused before anything is re-run."""
    result, _tmp, cfg = rank_run
    from stacking import load_config

    uri = load_config(cfg).tracking.uri
    copy = _recorded_copy(uri, result.run_id, {"base.wide.cv_log_loss": 0.5}, tmp_path)
    out = tmp_path / "again"
    code = main(["reproduce", copy, "--tracking-uri", uri, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: run {copy} recorded no cv_ metric of its ensemble, so a re-run would have "
        "nothing to be compared with; reproduce a run that finished (`stacking runs` lists "
        "them with their scores)\n"
    )
    assert not out.exists()


def test_cli_reproduce_unknown_run_exits_2(tmp_path, capsys):
    code = main(["reproduce", "0" * 32, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read run"), err


def test_pyfunc_signature_lists_only_view_columns_and_serves_unlabeled_rows(
    rank_run, multiclass_project
):
    result, _tmp, cfg = rank_run
    from stacking import load_config

    model, _ = logged_ensemble(load_config(cfg).tracking.uri, result.run_id)
    inputs = {c.name: c.required for c in model.metadata.get_input_schema().inputs}
    # No target, no weight column: only the id (optional) and what the views read.
    assert inputs == {"id": False, **{f"f_{i}": True for i in range(6)}}
    rows = pd.read_parquet(multiclass_project.root / "test.parquet")[[f"f_{i}" for i in range(6)]]
    got = model.predict(rows)
    assert "id" not in got.columns
    np.testing.assert_allclose(
        _ensemble_columns(got), _ensemble_columns(result.test_predictions), atol=1e-10
    )


def test_serving_settings_come_from_model_config_then_environment(monkeypatch, tmp_path):
    from stacking import ConfigError
    from stacking.tracking._model import SERVING_SETTINGS
    from stacking.tracking._pyfunc_model import SETTINGS, serving_settings

    assert tuple(SETTINGS) == SERVING_SETTINGS  # the keys logged are the keys read
    unset = dict.fromkeys(SERVING_SETTINGS)  # as the logged model_config holds them
    defaults = {
        "image_root": None,
        "max_rows": 1000,
        "max_image_bytes": 10 * 2**20,
        "max_image_pixels": 25_000_000,
    }
    assert serving_settings(unset) == serving_settings(None) == defaults
    monkeypatch.setenv("STACKING_IMAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("STACKING_MAX_ROWS", "50")
    got = serving_settings({**unset, "max_rows": 7})
    assert got == {**defaults, "image_root": tmp_path, "max_rows": 7}
    assert serving_settings(unset)["max_rows"] == 50
    bad = [
        (
            {"max_rows": "ten"},
            "model_config['max_rows'] must be a positive whole number. Received: 'ten'",
        ),
        ({"max_image_pixels": 0}, "model_config['max_image_pixels'] must be a positive"),
        ({"max_image_bytes": 1.5}, "model_config['max_image_bytes'] must be a positive"),
        (
            {"image_root": "images"},
            "model_config['image_root'] must be an existing folder "
            "given as an absolute path. Received: 'images'",
        ),
        ({"image_root": str(tmp_path / "nosuch")}, "model_config['image_root'] must be an"),
    ]
    for config, message in bad:
        with pytest.raises(ConfigError) as info:
            serving_settings({**unset, **config})
        assert str(info.value).startswith(message)
    monkeypatch.setenv("STACKING_MAX_IMAGE_BYTES", "1e6")
    with pytest.raises(ConfigError, match=r"^STACKING_MAX_IMAGE_BYTES must be a positive"):
        serving_settings(unset)


@pytest.fixture(scope="module")
def onehot_run(tmp_path_factory):
    """A run on one-hot columns stored as integers (``pd.get_dummies(dtype=int)``), read
    by a float32 view, with one tiny external model: its logged model must take the same
    columns as floats, as ``stacking predict`` does."""
    import keras
    import yaml

    tmp = tmp_path_factory.mktemp("onehot")
    rng = np.random.default_rng(0)
    colour = rng.choice(["red", "green", "blue"], 120)
    frame = pd.get_dummies(pd.DataFrame({"c": colour}), dtype=int)
    frame.insert(0, "id", [f"r{i}" for i in range(120)])
    frame["y"] = np.where(colour == "red", "yes", "no")
    frame.iloc[:90].to_csv(tmp / "train.csv", index=False)
    frame.iloc[90:].drop(columns="y").to_csv(tmp / "test.csv", index=False)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp / "m.keras")
    raw = {
        "name": "onehot",
        "data": {
            "train": str(tmp / "train.csv"),
            "test": str(tmp / "test.csv"),
            "id": "id",
            "target": "y",
            "views": {"x": {"columns": "c_*"}},
        },
        "folds": {"kind": "stratified", "n_splits": 3, "seed": 0},
        "base_models": {
            "m": {"path": str(tmp / "m.keras"), "input": "x", "trained_on": "external"}
        },
        "meta": {"candidates": ["logistic", "mean"], "bootstrap": 0},
        "tracking": {"uri": sqlite_store(tmp), "experiment": "onehot"},
        "cache": {"dir": str(tmp / "cache")},
        "plots": False,
    }
    (tmp / "onehot.yaml").write_text(yaml.safe_dump(raw))
    result = Experiment.from_yaml(tmp / "onehot.yaml", output_dir=tmp / "out", progress=False).run()
    return result, raw["tracking"]["uri"], pd.read_csv(tmp / "test.csv"), colour[90:]


@pytest.mark.e2e
@pytest.mark.slow
def test_signature_types_follow_the_views_so_float_one_hot_rows_are_served(onehot_run):
    result, uri, test, colours = onehot_run
    assert test["c_red"].dtype == np.int64  # as the run read them
    model, model_id = logged_ensemble(uri, result.run_id)
    types = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert types == {"id": "string", "c_blue": "double", "c_green": "double", "c_red": "double"}
    floats = pd.get_dummies(pd.DataFrame({"c": colours}), dtype=float)  # as a user makes them
    floats.insert(0, "id", test["id"])
    assert (floats.dtypes[1:] == np.float64).all()
    expected = _ensemble_columns(result.test_predictions)
    for rows in (floats, test):  # float one-hot columns, and the integers of the run
        np.testing.assert_allclose(_ensemble_columns(model.predict(rows)), expected, atol=1e-10)
    with ModelServer(f"models:/{model_id}", uri, cwd=Path.cwd()) as server:
        status, answer = server.wait().post(floats)
    assert status == 200, answer
    np.testing.assert_allclose(
        _ensemble_columns(pd.DataFrame(answer["predictions"])), expected, atol=1e-9
    )
