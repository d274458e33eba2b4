"""Data: reading, task inference, target encoding, ids, views, weights and the digest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal

from stacking.config import DataConfig, ViewConfig
from stacking.data import ROW_ID, infer_task, load_dataset, read_table, table_digest
from stacking.errors import DataError, DataFileNotFoundError


def _frame(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sample": [f"s{i:02d}" for i in range(n)],
            "px_0": rng.integers(0, 9, n),
            "px_1": rng.integers(0, 9, n),
            "px_2": rng.integers(0, 9, n),
            "px_3": rng.integers(0, 9, n),
            "age": np.arange(n) * 0.5,
            "label": np.array(["dog", "cat", "emu"])[np.arange(n) % 3],
        }
    )


def _load(tmp_path, frame, name="train.csv", test=None, **cfg):
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    if test is not None:
        test_path = tmp_path / "test.csv"
        test.to_csv(test_path, index=False)
        cfg["test"] = test_path
    cfg.setdefault("target", "label")
    return load_dataset(DataConfig(train=path, **cfg))


def test_load_dataset_csv_and_parquet_read_the_same(tmp_path):
    frame = _frame()
    a = _load(tmp_path, frame, "train.csv", id="sample")
    b = _load(tmp_path, frame, "train.parquet", id="sample")
    pd.testing.assert_frame_equal(a.train, b.train)
    assert a.digest == b.digest  # converting the file's format keeps the experiment's digest
    assert_array_equal(a.ids, b.ids)
    assert_array_equal(a.y, b.y)
    assert (a.task, a.classes) == (b.task, b.classes)


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1, 1, 0], "binary"),
        (["yes", "no", "no", "yes"], "binary"),
        ([True, False, True, False], "binary"),
        ([0, 1, 2, 1, 0], "multiclass"),
        (["a", "b", "c", "a"], "multiclass"),
        ([0.0, 1.0, 2.0, 1.0], "multiclass"),
        ([0.1, 1.5, 2.25, 3.0], "regression"),
        (list(range(60)), "regression"),
        ([f"c{i}" for i in range(60)], "multiclass"),
    ],
)
def test_infer_task_from_values(values, task):
    assert infer_task(pd.Series(values)) == task


def test_infer_task_several_columns_is_multilabel():
    assert infer_task(pd.DataFrame({"a": [0, 1], "b": [1, 1]})) == "multilabel"


def test_load_dataset_encodes_classes_in_sorted_order(tmp_path):
    data = _load(tmp_path, _frame())
    assert data.task == "multiclass"
    assert data.classes == ["cat", "dog", "emu"]
    assert data.output_names() == ["cat", "dog", "emu"]
    assert data.n_outputs == 3
    expected = [data.classes.index(v) for v in data.train["label"]]
    assert_array_equal(data.y, expected)
    assert data.y.dtype.kind == "i"


def test_load_dataset_binary_integer_classes(tmp_path):
    frame = pd.DataFrame({"x": range(6), "label": [7, 3, 3, 7, 7, 3]})
    data = _load(tmp_path, frame)
    assert (data.task, data.classes) == ("binary", [3, 7])
    assert_array_equal(data.y, [1, 0, 0, 1, 1, 0])
    assert data.output_names() == ["3", "7"]


def test_load_dataset_regression_float_target(tmp_path):
    frame = pd.DataFrame({"x": range(5), "label": [0.5, 1.25, -2.0, 3.75, 0.0]})
    data = _load(tmp_path, frame)
    assert data.task == "regression"
    assert data.classes == []
    assert data.output_names() == ["pred"] and data.n_outputs == 1
    assert_array_equal(data.y, [0.5, 1.25, -2.0, 3.75, 0.0])


def test_load_dataset_multilabel_target_list(tmp_path):
    frame = pd.DataFrame({"x": range(4), "cat": [1, 0, 1, 0], "dog": [0, 0, 1, 1]})
    data = _load(tmp_path, frame, target=["cat", "dog"])
    assert data.task == "multilabel"
    assert data.classes == ["cat", "dog"]
    assert data.n_outputs == 2
    assert_array_equal(data.y, [[1, 0], [0, 0], [1, 1], [0, 1]])


def test_load_dataset_declared_task_overrides_inference(tmp_path):
    frame = pd.DataFrame({"x": range(6), "label": [0, 1, 2, 0, 1, 2]})
    assert _load(tmp_path, frame, task="regression").task == "regression"


@pytest.mark.parametrize(
    ("frame", "cfg", "match"),
    [
        (
            pd.DataFrame({"label": [0, 1, None, 1]}),
            {},
            r"target 'label' in .*train\.csv has missing values",
        ),
        (
            pd.DataFrame({"a": [0, 1], "b": [1, None]}),
            {"target": ["a", "b"]},
            r"target \['a', 'b'\] .* has missing values",
        ),
        (
            pd.DataFrame({"a": [0, 2], "b": [1, 0]}),
            {"target": ["a", "b"]},
            r"multilabel target .* must be a list of 0/1 columns",
        ),
        (pd.DataFrame({"x": [1, 2]}), {}, r"has no column\(s\) \['label'\]"),
        (
            pd.DataFrame({"label": [0, 1, 2, 2]}),
            {"task": "binary"},
            r"task binary needs 2 classes in 'label'; .* has 3: \[0, 1, 2\]",
        ),
        (pd.DataFrame({"label": [1, 1, 1]}), {"task": "multiclass"}, r"has a single class \[1\]"),
        (
            pd.DataFrame({"label": ["a", "b", "c"]}),
            {"task": "regression"},
            r"regression target 'label' .* is not numeric",
        ),
        (
            pd.DataFrame({"a": [0, 1], "b": [1, 0]}),
            {"target": ["a", "b"], "task": "binary"},
            r"task 'binary' takes one target column\. Received: \['a', 'b'\]",
        ),
        (pd.DataFrame({"label": []}), {}, r"train\.csv has no rows"),
    ],
)
def test_load_dataset_bad_target(tmp_path, frame, cfg, match):
    with pytest.raises(DataError, match=match):
        _load(tmp_path, frame, **cfg)


def test_load_dataset_default_id_is_row_number(tmp_path):
    test = _frame(5, seed=1).drop(columns="label")
    data = _load(tmp_path, _frame(), test=test)
    assert data.id_column == ROW_ID == "row_id"
    assert_array_equal(data.ids, np.arange(12))
    assert_array_equal(data.train[ROW_ID], np.arange(12))
    assert_array_equal(data.test_ids, np.arange(5))


def test_load_dataset_id_column(tmp_path):
    test = _frame(3, seed=1).drop(columns="label").assign(sample=["t0", "t1", "t2"])
    data = _load(tmp_path, _frame(), test=test, id="sample")
    assert data.id_column == "sample"
    assert ROW_ID not in data.train.columns
    assert list(data.ids[:3]) == ["s00", "s01", "s02"]
    assert list(data.test_ids) == ["t0", "t1", "t2"]


@pytest.mark.parametrize(
    ("frame", "cfg", "match"),
    [
        (
            pd.DataFrame({"id": [4, 5, 4], "label": [0, 1, 0]}),
            {"id": "id"},
            r"id column 'id' in .*train\.csv has duplicates, e.g\. 4",
        ),
        (
            pd.DataFrame({"id": ["a", "b", "b"], "label": [0, 1, 0]}),
            {"id": "id"},
            r"has duplicates, e\.g\. 'b'",
        ),
        (pd.DataFrame({"label": [0, 1]}), {"id": "key"}, r"has no column\(s\) \['key'\]"),
        (
            pd.DataFrame({"row_id": [3, 4], "label": [0, 1]}),
            {},
            r"already has a column 'row_id'; set data\.id: row_id",
        ),
    ],
)
def test_load_dataset_bad_id(tmp_path, frame, cfg, match):
    with pytest.raises(DataError, match=match):
        _load(tmp_path, frame, **cfg)


def test_load_dataset_test_file_without_id_column(tmp_path):
    test = pd.DataFrame({"px_0": [1, 2]})
    with pytest.raises(DataError, match=r"test\.csv has no column\(s\) \['sample'\]"):
        _load(tmp_path, _frame(), test=test, id="sample")


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("missing.csv", DataFileNotFoundError, r"data file '.*missing\.csv' does not exist"),
        ("table.xlsx", DataError, r"has suffix '\.xlsx'; use \.csv or \.parquet"),
        ("broken.parquet", DataError, r"cannot read '.*broken\.parquet'"),
    ],
)
def test_read_table_errors(tmp_path, path, error, match):
    if path != "missing.csv":
        (tmp_path / path).write_bytes(b"not a table")
    with pytest.raises(error, match=match):
        read_table(tmp_path / path)


def test_view_glob_and_reshape(tmp_path):
    data = _load(tmp_path, _frame(), test=_frame(5, seed=1).drop(columns="label"))
    spec = ViewConfig(columns="px_*", shape=[2, 2, 1])
    x = data.view(spec)
    assert x.shape == (12, 2, 2, 1) and x.dtype == np.float32
    expected = data.train[["px_0", "px_1", "px_2", "px_3"]].to_numpy(np.float32)
    assert_array_equal(x.reshape(12, 4), expected)
    assert x[3, 1, 0, 0] == data.train["px_2"].iloc[3]
    assert data.view(spec, which="test").shape == (5, 2, 2, 1)


def test_view_column_list_keeps_order_and_dtype(tmp_path):
    data = _load(tmp_path, _frame())
    x = data.view(ViewConfig(columns=["age", "px_1"], dtype="float64"))
    assert x.dtype == np.float64
    assert_array_equal(x, data.train[["age", "px_1"]].to_numpy(float))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            ViewConfig(columns="px_*", shape=[3, 3]),
            r"view 'px_\*' in .*train\.csv has 4 columns but shape \[3, 3\] needs 9",
        ),
        (
            ViewConfig(columns=["px_0", "age"], shape=[3]),
            r"view \['px_0', 'age'\] .* has 2 columns but shape \[3\] needs 3",
        ),
        (ViewConfig(columns="img_*"), r"no column of .*train\.csv matches 'img_\*'"),
        (ViewConfig(columns=["px_0", "px_9"]), r"has no column\(s\) \['px_9'\]"),
    ],
)
def test_view_errors_name_columns_and_shape(tmp_path, spec, match):
    data = _load(tmp_path, _frame())
    with pytest.raises(DataError, match=match):
        data.view(spec)


def test_load_dataset_weight_column(tmp_path):
    frame = _frame().assign(w=np.linspace(0, 2, 12))
    data = _load(tmp_path, frame, weight="w")
    assert_array_equal(data.sample_weight, np.linspace(0, 2, 12))
    assert _load(tmp_path, _frame()).sample_weight is None


@pytest.mark.parametrize(
    ("weights", "weight", "match"),
    [
        ([1.0, -0.5, 1.0], "w", r"weight column 'w' in .* must be finite and >= 0"),
        ([1.0, np.nan, 1.0], "w", r"weight column 'w' in .* must be finite and >= 0"),
        ([1.0, np.inf, 1.0], "w", r"weight column 'w' in .* must be finite and >= 0"),
        (["a", "b", "c"], "w", r"weight column 'w' in .* must be numeric"),
        ([1.0, 1.0, 1.0], "weights", r"has no column\(s\) \['weights'\]"),
    ],
)
def test_load_dataset_bad_weight(tmp_path, weights, weight, match):
    frame = pd.DataFrame({"label": [0, 1, 0], "w": weights})
    with pytest.raises(DataError, match=match):
        _load(tmp_path, frame, weight=weight)


def test_table_digest_stable_when_reread(tmp_path):
    first = _load(tmp_path, _frame())
    second = _load(tmp_path, _frame())
    assert first.digest == second.digest == table_digest(first.train)
    assert len(first.digest) == 16


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(px_2=f["px_2"].where(f.index != 5, f["px_2"] + 1)),
        lambda f: f.assign(label=f["label"].where(f.index != 0, "emu")),
        lambda f: f.rename(columns={"age": "years"}),
        lambda f: f.iloc[:-1],
    ],
)
def test_table_digest_changes_with_one_value(tmp_path, change):
    frame = _frame()
    assert table_digest(change(frame)) != table_digest(frame)


def test_table_digest_changes_with_one_value_in_file(tmp_path):
    frame = _frame()
    before = _load(tmp_path, frame).digest
    frame.loc[7, "age"] = 100.0
    assert _load(tmp_path, frame).digest != before


def test_dataset_view_by_name_and_a_misspelt_name_is_a_typed_error(tmp_path):
    views = {"pixels": {"columns": "px_*"}, "age": {"columns": ["age"]}}
    data = _load(tmp_path, _frame(), id="sample", views=views)
    assert_array_equal(data.view("pixels"), _frame()[[f"px_{i}" for i in range(4)]])
    assert data.view("age").dtype == np.float32 and data.view("age").shape == (12, 1)
    with pytest.raises(DataError, match=r"no view 'pixel' in data\.views .*did you mean 'pixels'"):
        data.view("pixel")
    with pytest.raises(DataError, match=r"takes a view name or a ViewConfig. Received: 3"):
        data.view(3)
