"""`stacking init`: a commented starting config guessed from the training table, which
`stacking run` accepts once a base model is added; `stacking run --submission`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from stacking.cli import main
from stacking.config import load_config
from stacking.starter import starter_config


def _titanic_like(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "PassengerId": np.arange(1, n + 1),
            "Pclass": rng.integers(1, 4, n),
            "Name": [f"name {i}" for i in range(n)],
            "Age": np.where(np.arange(n) % 7 == 0, np.nan, rng.uniform(1, 80, n)),
            "Fare": rng.uniform(5, 100, n).round(2),
            "Survived": rng.integers(0, 2, n),
        }
    )


def test_init_guesses_id_target_task_and_a_numeric_view(tmp_path, capsys):
    frame = _titanic_like()
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.drop(columns="Survived").head(10).to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "cfg" / "titanic.yaml"
    argv = ["init", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv")]
    assert main([*argv, "--output", str(out)]) == 0
    assert f"stacking run {out}" in capsys.readouterr().out
    text = out.read_text()
    data = yaml.safe_load(text)["data"]
    assert data == {
        "train": "../train.csv",  # relative to the config's folder, as configs read paths
        "test": "../test.csv",
        "id": "PassengerId",
        "target": "Survived",
        "task": "binary",
        "views": {"numeric": {"columns": ["Pclass", "Fare"]}},
    }
    assert "left out (not numeric): Name" in text and "left out (missing values): Age" in text
    assert "add your base models" in text.lower()
    # As written it names the missing piece; with one base model it is a valid config.
    with pytest.raises(Exception, match="no base models: add at least one"):
        load_config(out)
    raw = yaml.safe_load(text)
    raw["base_models"] = {"m": {"path": "m.keras", "input": "numeric", "trained_on": "external"}}
    out.write_text(yaml.safe_dump(raw))
    cfg = load_config(out)
    assert cfg.data.train == (tmp_path / "train.csv").resolve()
    # An existing file is never replaced.
    assert main([*argv, "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("frame", "test_columns", "expected"),
    [
        # No test table: a column named like a target; no id column: row numbers.
        (
            pd.DataFrame({"a": [1.0, 2.5, 3.5], "label": ["x", "y", "z"]}),
            None,
            ("label", None, "multiclass", ["a"]),
        ),
        # A continuous target is regression, and the last column when nothing else says.
        (
            pd.DataFrame({"id": [3, 1, 2], "a": [1, 2, 3], "v": [0.1, 2.2, 3.7]}),
            None,
            ("v", "id", "regression", ["a"]),
        ),
        # Several 0/1 columns the test lacks: multilabel.
        (
            pd.DataFrame({"a": [1.0, 2.0, 3.0], "p": [0, 1, 1], "q": [1, 0, 1]}),
            ["a"],
            (["p", "q"], None, "multilabel", ["a"]),
        ),
    ],
)
def test_init_guesses(tmp_path, frame, test_columns, expected):
    frame.to_csv(tmp_path / "train.csv", index=False)
    test = None
    if test_columns is not None:
        test = tmp_path / "test.csv"
        frame[test_columns].to_csv(test, index=False)
    data = yaml.safe_load(starter_config(tmp_path / "train.csv", test=test, at=tmp_path))["data"]
    got = (data["target"], data.get("id"), data["task"], data["views"]["numeric"]["columns"])
    assert got == expected


def test_init_and_run_with_submission_end_to_end(binary_project, tmp_path, capsys):
    """The written config runs once a base model is added, and --submission writes the
    same file `stacking predict --submission` writes."""
    root = binary_project.root
    pd.read_csv(root / "train.csv").drop(columns="w").to_csv(tmp_path / "train.csv", index=False)
    test = pd.read_parquet(root / "test.parquet").drop(columns="w")
    test.to_parquet(tmp_path / "test.parquet", index=False)
    cfg = tmp_path / "stack.yaml"
    argv = ["init", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.parquet")]
    assert main([*argv, "--output", str(cfg)]) == 0
    text = cfg.read_text().replace(
        "base_models:\n",
        f"base_models:\n  outside:\n    path: {root / 'models' / 'outside.keras'}\n"
        "    input: numeric\n    trained_on: external\n",
    )
    cfg.write_text(text)
    sub = tmp_path / "submission.csv"
    args = ["run", str(cfg), "--quiet", "--set", "tracking.enabled=false", "--set", "plots=false"]
    code = main([*args, "--output", str(tmp_path / "out"), "--submission", str(sub)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"wrote a submission of {len(test)} rows to {sub}" in out.out
    written = pd.read_csv(sub)
    assert list(written.columns) == ["id", "y"] and written["id"].tolist() == test["id"].tolist()
    # The file `stacking predict --submission` writes from the same results folder.
    again = tmp_path / "again.csv"
    predict = ["predict", str(tmp_path / "out"), str(tmp_path / "test.parquet")]
    assert main([*predict, "--output", str(tmp_path / "p.csv"), "--submission", str(again)]) == 0
    pd.testing.assert_frame_equal(written, pd.read_csv(again))


def test_run_submission_without_test_rows_fails_before_computing(binary_project, tmp_path, capsys):
    cfg = binary_project.config(tmp_path, **{"data.test": None, "tracking.enabled": False})
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--output", str(out), "--submission", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "needs test rows to predict; set data.test" in err[0]
    assert not out.exists() and not (tmp_path / "cache").exists()
