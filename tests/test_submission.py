"""`stacking predict … --submission`: a Kaggle-style file from a saved ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stacking import Experiment
from stacking.cli import main

pytestmark = pytest.mark.e2e


def _run(project, tmp):
    cfg = project.config(tmp, **{"tracking.enabled": False, "meta.bootstrap": 0})
    Experiment.from_yaml(cfg, output_dir=tmp / "out", progress=False).run()
    return tmp / "out"


@pytest.fixture(scope="module")
def multiclass_run(multiclass_project, tmp_path_factory):
    return _run(multiclass_project, tmp_path_factory.mktemp("submission-multiclass"))


@pytest.fixture(scope="module")
def regression_run(regression_project, tmp_path_factory):
    return _run(regression_project, tmp_path_factory.mktemp("submission-regression"))


def _predict(results, project, tmp_path, *extra):
    preds, sub = tmp_path / "preds.csv", tmp_path / "submission.csv"
    rows = str(project.root / "test.parquet")
    args = ["predict", str(results), rows, "--output", str(preds), "--submission", str(sub)]
    assert main([*args, *extra]) == 0
    return pd.read_csv(preds), pd.read_csv(sub)


def test_submission_holds_the_id_and_the_predicted_class(
    multiclass_run, multiclass_project, tmp_path, capsys
):
    preds, sub = _predict(multiclass_run, multiclass_project, tmp_path)
    # Named like the training target ('y'), read from the run's config.resolved.yaml.
    assert list(sub.columns) == ["id", "y"]
    test_ids = pd.read_parquet(multiclass_project.root / "test.parquet")["id"]
    assert sub["id"].tolist() == test_ids.tolist()
    proba = preds[["ensemble__ant", "ensemble__bee", "ensemble__cat"]].to_numpy()
    assert sub["y"].tolist() == list(np.array(["ant", "bee", "cat"])[proba.argmax(axis=1)])
    assert "wrote a submission of 60 rows" in capsys.readouterr().out


def test_submission_proba_has_one_column_per_class(multiclass_run, multiclass_project, tmp_path):
    preds, sub = _predict(multiclass_run, multiclass_project, tmp_path, "--proba")
    assert list(sub.columns) == ["id", "ant", "bee", "cat"]
    np.testing.assert_allclose(
        sub[["ant", "bee", "cat"]].to_numpy(),
        preds[["ensemble__ant", "ensemble__bee", "ensemble__cat"]].to_numpy(),
    )
    np.testing.assert_allclose(sub[["ant", "bee", "cat"]].sum(axis=1), 1.0, atol=1e-6)


def test_submission_target_column_is_renamed_on_request(
    multiclass_run, multiclass_project, tmp_path
):
    _, sub = _predict(multiclass_run, multiclass_project, tmp_path, "--target-column", "species")
    assert list(sub.columns) == ["id", "species"]


def test_submission_regression_holds_the_value(regression_run, regression_project, tmp_path):
    preds, sub = _predict(regression_run, regression_project, tmp_path)
    assert list(sub.columns) == ["id", "y"]
    np.testing.assert_allclose(sub["y"], preds["ensemble__pred"])


def test_submission_multilabel_holds_one_column_per_label(
    multilabel_project, tmp_path_factory, tmp_path
):
    results = _run(multilabel_project, tmp_path_factory.mktemp("submission-multilabel"))
    preds, sub = _predict(results, multilabel_project, tmp_path)
    assert list(sub.columns) == ["id", "a", "b", "c"]
    proba = preds[["ensemble__a", "ensemble__b", "ensemble__c"]].to_numpy()
    np.testing.assert_array_equal(sub[["a", "b", "c"]].to_numpy(), (proba >= 0.5).astype(int))
    # The same labels as the predictions file's comma-joined `prediction` column.
    joined = [",".join(k for k, on in zip("abc", row) if on) for row in sub[["a", "b", "c"]].values]
    assert joined == preds["prediction"].fillna("").tolist()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--submission", "{tmp}/s.txt"], "--submission '{tmp}/s.txt' must end in .csv"),
        (["--proba"], "--proba and --target-column shape the --submission file"),
    ],
)
def test_submission_bad_flags_are_user_errors(
    multiclass_run, multiclass_project, tmp_path, capsys, extra, message
):
    extra = [e.format(tmp=tmp_path) for e in extra]
    rows = str(multiclass_project.root / "test.parquet")
    out = tmp_path / "p.csv"
    assert main(["predict", str(multiclass_run), rows, "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(tmp=tmp_path)}")
    assert err.count("\n") == 1
    assert not out.exists()


def test_submission_proba_refused_for_regression(
    regression_run, regression_project, tmp_path, capsys
):
    rows = str(regression_project.root / "test.parquet")
    args = ["--output", str(tmp_path / "p.csv"), "--submission", str(tmp_path / "s.csv")]
    assert main(["predict", str(regression_run), rows, *args, "--proba"]) == 2
    assert capsys.readouterr().err.startswith("error: --proba is for classification")
    assert not (tmp_path / "s.csv").exists()


def test_submission_needs_the_id_column(multiclass_run, multiclass_project, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    pd.read_parquet(multiclass_project.root / "test.parquet").drop(columns="id").to_csv(
        rows, index=False
    )
    sub = tmp_path / "s.csv"
    args = ["--output", str(tmp_path / "p.csv"), "--submission", str(sub)]
    assert main(["predict", str(multiclass_run), str(rows), *args]) == 2
    assert capsys.readouterr().err.startswith("error: the rows have no id column 'id'")
    assert not sub.exists()
